"""Polling IMAP mailboxes (imaplib): fetch new mail, hand it to ``email_receive``, mark it processed.

Idempotent on three levels: a ``ProcessedMail`` row per mailbox + UIDVALIDITY +
UID (written in the transaction that stores the message), the unique
Message-ID of ``EmailMeta``/``Message.provider_message_id`` (the same mail
through two mailboxes or a re-delivered copy), and the server-side flag or move
done after commit. A crash between commit and flag only means the next poll
finds the UID recorded and flags it without storing anything.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from channels_app.email.models import Mailbox, ProcessedMail
from channels_app.email.parsing import parse_mail
from channels_app.email.services import email_receive

logger = logging.getLogger(__name__)

UIDVALIDITY_RE = re.compile(rb"UIDVALIDITY (\d+)")
PROCESSED_FLAG = "\\Seen"


def _ssl_context(mailbox: Mailbox) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not mailbox.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def imap_connect(mailbox: Mailbox) -> imaplib.IMAP4:
    timeout = settings.EMAIL_IMAP_TIMEOUT
    if mailbox.security == Mailbox.Security.TLS:
        client = imaplib.IMAP4_SSL(mailbox.host, mailbox.port, ssl_context=_ssl_context(mailbox), timeout=timeout)
    else:
        client = imaplib.IMAP4(mailbox.host, mailbox.port, timeout=timeout)
        # Never log in over a plain connection: STARTTLS or nothing.
        client.starttls(ssl_context=_ssl_context(mailbox))
    client.login(mailbox.username, mailbox.password)
    return client


def _quote(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _mark_done(client: imaplib.IMAP4, mailbox: Mailbox, uid: bytes) -> None:
    if mailbox.after_processing == Mailbox.AfterProcessing.MOVE and mailbox.move_to:
        client.create(_quote(mailbox.move_to))  # "already exists" is answered NO and harmless
        if "MOVE" in client.capabilities:
            typ, _data = client.uid("MOVE", uid, _quote(mailbox.move_to))
            if typ == "OK":
                return
        typ, _data = client.uid("COPY", uid, _quote(mailbox.move_to))
        if typ == "OK":
            client.uid("STORE", uid, "+FLAGS.SILENT", "(\\Seen \\Deleted)")
            client.expunge()
            return
        logger.warning("mailbox %s: cannot move to %r, marking as read instead", mailbox.pk, mailbox.move_to)
    client.uid("STORE", uid, "+FLAGS.SILENT", f"({PROCESSED_FLAG})")


def _fetch(client: imaplib.IMAP4, uid: bytes) -> bytes | None:
    # BODY.PEEK leaves \Seen alone: mail stays new on the server until it is stored here.
    typ, data = client.uid("FETCH", uid, "(BODY.PEEK[])")
    if typ != "OK":
        return None
    for item in data:
        if isinstance(item, tuple) and len(item) == 2:
            return item[1]
    return None


def mailbox_poll(*, mailbox: Mailbox, limit: int | None = None) -> dict[str, int]:
    """Handle the new mail of one mailbox; returns counts per outcome."""
    limit = limit or settings.EMAIL_IMAP_BATCH
    counts: dict[str, int] = {}
    client = imap_connect(mailbox)
    try:
        typ, _data = client.select(_quote(mailbox.folder))
        if typ != "OK":
            raise imaplib.IMAP4.error(f"cannot open folder {mailbox.folder!r}")
        _typ, validity = client.response("UIDVALIDITY")
        uidvalidity = int(validity[0]) if validity and validity[0] else 0
        typ, data = client.uid("SEARCH", None, "UNSEEN", "UNDELETED")
        uids = (data[0] or b"").split()[:limit] if typ == "OK" else []
        for uid in uids:
            outcome = _process(client, mailbox, uidvalidity, uid)
            counts[outcome] = counts.get(outcome, 0) + 1
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()
    return counts


def _process(client: imaplib.IMAP4, mailbox: Mailbox, uidvalidity: int, uid: bytes) -> str:
    if ProcessedMail.objects.filter(mailbox=mailbox, uidvalidity=uidvalidity, uid=int(uid)).exists():
        _mark_done(client, mailbox, uid)
        return "already"
    raw = _fetch(client, uid)
    if raw is None:
        return "unreadable"
    try:
        with transaction.atomic():
            result = email_receive(raw=raw, mailbox=mailbox)
            ProcessedMail.objects.create(
                mailbox=mailbox,
                uidvalidity=uidvalidity,
                uid=int(uid),
                rfc_message_id=parse_mail(raw).message_id,
                outcome=result.outcome,
            )
    except IntegrityError:
        # Another poller of the same mailbox recorded this UID first.
        return "already"
    _mark_done(client, mailbox, uid)
    return result.outcome


def imap_poll_all() -> dict[str, dict[str, int] | str]:
    """Poll every active mailbox; one failing mailbox does not stop the others."""
    results: dict[str, dict[str, int] | str] = {}
    for mailbox in Mailbox.objects.filter(is_active=True):
        try:
            counts = mailbox_poll(mailbox=mailbox)
            error = ""
            results[mailbox.name] = counts
        except (TimeoutError, imaplib.IMAP4.error, OSError, ssl.SSLError) as exc:
            error = f"{exc.__class__.__name__}: {exc}"[:500]
            results[mailbox.name] = error
            logger.warning("mailbox %s: %s", mailbox.pk, error)
        Mailbox.objects.filter(pk=mailbox.pk).update(last_polled_at=timezone.now(), last_error=error)
    return results
