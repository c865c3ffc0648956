"""Real mail servers for the email tests: aiosmtpd (SMTP) in a thread, Debian's dovecot (IMAP) in a subprocess."""

from __future__ import annotations

import imaplib
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from pathlib import Path

from tests.live import free_port

DOVECOT = "/usr/sbin/dovecot"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self):
        return BytesParser(policy=policy.default).parsebytes(self.data)


@dataclass
class SMTPRecorder:
    """aiosmtpd handler: keeps every mail; ``refuse`` maps a recipient to an SMTP reply."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[SMTPRecorder, int]]:
    from aiosmtpd.controller import Controller

    recorder = SMTPRecorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def dovecot_available() -> bool:
    return os.path.exists(DOVECOT)


@dataclass
class Dovecot:
    port: int
    imaps_port: int
    user: str
    password: str
    root: Path

    def client(self) -> imaplib.IMAP4:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        client = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        client.starttls(ssl_context=context)
        client.login(self.user, self.password)
        return client

    def deliver(self, raw: bytes, folder: str = "INBOX") -> None:
        client = self.client()
        try:
            typ, data = client.append(folder, None, imaplib.Time2Internaldate(time.time()), raw)
            assert typ == "OK", data
        finally:
            client.logout()

    def folder_state(self, folder: str = "INBOX") -> dict[str, list[bytes]]:
        client = self.client()
        try:
            typ, _data = client.select(folder)
            if typ != "OK":
                return {"all": [], "unseen": []}
            return {
                "all": client.uid("SEARCH", None, "ALL")[1][0].split(),
                "unseen": client.uid("SEARCH", None, "UNSEEN")[1][0].split(),
            }
        finally:
            client.logout()


CONFIG = """
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
auth_mechanisms = plain
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={mail_group} home={root}/home/%u
}}
mail_location = maildir:{root}/home/%u/Maildir
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


@contextmanager
def dovecot_server(root: Path) -> Iterator[Dovecot]:
    """A throwaway dovecot: own config, self-signed certificate, one user from a passwd file, a free port.

    Run by an ordinary user it runs entirely as that user. Run as root (a CI
    container) dovecot refuses to serve as root, so it uses Debian's own
    unprivileged ``dovecot``/``dovenull`` users and the mail folders belong to ``dovecot``.
    """
    import grp
    import pwd

    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)  # noqa: S103 (dovecot's own users must reach the mail folders)
    port, imaps_port = free_port(), free_port()
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(root / "key.pem"),
            "-out",
            str(root / "cert.pem"),
        ],
        check=True,
        capture_output=True,
    )
    user, password = "support@example.test", "imap-test-password"
    (root / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
    if os.geteuid() == 0:
        internal, login, mail_user = "dovecot", "dovenull", "dovecot"
    else:
        internal = login = mail_user = pwd.getpwuid(os.geteuid()).pw_name
    mail_group = grp.getgrgid(pwd.getpwnam(mail_user).pw_gid).gr_name
    internal_group = grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name
    home = root / "home"
    home.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(home, mail_user, mail_group)
    config = root / "dovecot.conf"
    config.write_text(
        CONFIG.format(
            root=root,
            port=port,
            imaps_port=imaps_port,
            internal_user=internal,
            internal_group=internal_group,
            login_user=login,
            mail_user=mail_user,
            mail_group=mail_group,
            mail_uid=pwd.getpwnam(mail_user).pw_uid,
            mail_gid=pwd.getpwnam(mail_user).pw_gid,
        )
    )
    # dovecot daemonises; its children would keep captured pipes open, so its output goes to its log file only.
    subprocess.run([DOVECOT, "-c", str(config)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = Dovecot(port=port, imaps_port=imaps_port, user=user, password=password, root=root)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                client = server.client()
                client.select("INBOX")  # mail access, not only login: the userdb settings must work too
                client.logout()
                break
            except (OSError, imaplib.IMAP4.error):
                if time.monotonic() > deadline:
                    log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                    raise RuntimeError(f"dovecot did not start: {log[-2000:]}") from None
                time.sleep(0.2)
        yield server
    finally:
        subprocess.run(
            [DOVECOT, "-c", str(config), "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30
        )
