"""Reading raw mail with the standard ``email`` package (modern policy) into what Parley needs.

No database access here: ``parse_mail(raw)`` is a pure function, so every
threading, auto-reply and bounce rule can be tested on bytes.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

from channels_app.email.models import TOKEN_ALPHABET, TOKEN_LENGTH

# "[#K7Q2M9XA]" anywhere in the subject; customers' mail programs keep it through "Re:"/"AW:".
TOKEN_RE = re.compile(r"\[#([" + TOKEN_ALPHABET + r"]{" + str(TOKEN_LENGTH) + r"})\]")
MSGID_RE = re.compile(r"<[^<>\s]+>")
MAX_HEADER_CHARS = 20_000


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    content: bytes
    content_id: str = ""


@dataclass
class Bounce:
    """A delivery status notification about a message we sent."""

    original_message_id: str
    reason: str


@dataclass
class ParsedMail:
    message_id: str
    in_reply_to: str
    references: list[str]
    subject: str
    from_address: str
    from_name: str
    to: list[str]
    cc: list[str]
    text: str
    html: str
    attachments: list[ParsedAttachment] = field(default_factory=list)
    auto_reply: bool = False
    bounce: Bounce | None = None
    raw_headers: str = ""

    @property
    def thread_ids(self) -> list[str]:
        """Message-IDs this mail answers, the most direct first."""
        ids = [self.in_reply_to] if self.in_reply_to else []
        return ids + [ref for ref in reversed(self.references) if ref not in ids]

    @property
    def subject_token(self) -> str:
        match = TOKEN_RE.search(self.subject)
        return match.group(1) if match else ""


def _msgids(value: str | None) -> list[str]:
    return MSGID_RE.findall(str(value or ""))[:100]


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a malformed header must not stop the mailbox
        return ""
    return str(value or "").strip()


def _addresses(message: EmailMessage, name: str) -> list[str]:
    values = message.get_all(name) or []
    return [address.lower() for _name, address in getaddresses([str(v) for v in values]) if "@" in address][:50]


def _is_auto_reply(message: EmailMessage) -> bool:
    auto_submitted = _header(message, "Auto-Submitted").lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if _header(message, "X-Autoreply") or _header(message, "X-Autorespond"):
        return True
    precedence = _header(message, "Precedence").lower()
    return precedence in ("auto_reply", "bulk", "junk", "list")


def _bounce(message: EmailMessage) -> Bounce | None:
    """A DSN (RFC 3464): ``multipart/report; report-type=delivery-status`` naming our original."""
    if message.get_content_type() != "multipart/report":
        return None
    if message.get_param("report-type", "").lower() != "delivery-status":
        return None
    original = ""
    reasons: list[str] = []
    for part in message.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            # Its body is a series of header blocks: per-message fields, then one per recipient.
            for block in part.get_payload() if part.is_multipart() else []:
                action = str(block.get("Action", "")).lower()
                if action and action != "failed":
                    continue
                diagnostic = str(block.get("Diagnostic-Code", "") or block.get("Status", "")).strip()
                recipient = str(block.get("Final-Recipient", "")).split(";")[-1].strip()
                if diagnostic or recipient:
                    reasons.append(f"{recipient}: {diagnostic}".strip(": "))
        elif ctype in ("message/rfc822", "text/rfc822-headers") and not original:
            if ctype == "message/rfc822":
                inner = part.get_payload()[0] if part.is_multipart() else None
                ids = _msgids(inner.get("Message-ID")) if inner is not None else []
            else:
                headers = BytesParser(policy=policy.default).parsebytes(
                    str(part.get_content()).encode("utf-8", "replace"), headersonly=True
                )
                ids = _msgids(headers.get("Message-ID"))
            original = ids[0] if ids else ""
    if not original:
        return None
    return Bounce(original_message_id=original, reason="; ".join(reasons)[:255] or "delivery failed")


def _body(message: EmailMessage) -> tuple[str, str]:
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    text = html = ""
    try:
        if text_part is not None:
            text = text_part.get_content()
        if html_part is not None:
            html = html_part.get_content()
    except (LookupError, UnicodeError, ValueError):
        payload = (text_part or html_part).get_payload(decode=True) or b""
        text = payload.decode("utf-8", errors="replace")
    return text.replace("\r\n", "\n"), html


def _attachments(message: EmailMessage) -> list[ParsedAttachment]:
    found = []
    for part in message.iter_attachments():
        if part.get_content_maintype() == "multipart" or part.get_content_type() == "message/delivery-status":
            continue
        content = part.get_payload(decode=True)
        if content is None:
            continue
        filename = part.get_filename() or "attachment"
        found.append(
            ParsedAttachment(
                filename=filename.replace("/", "_").replace("\\", "_")[:200],
                content_type=part.get_content_type(),
                content=content,
                content_id=_header(part, "Content-ID").strip("<>"),
            )
        )
    return found


def parse_mail(raw: bytes) -> ParsedMail:
    message: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[assignment]
    ids = _msgids(_header(message, "Message-ID"))
    # A mail without a Message-ID still needs a stable one, or a second poll would store it twice.
    message_id = ids[0] if ids else f"<{hashlib.sha256(raw).hexdigest()[:40]}@missing-id.parley.invalid>"
    from_name, from_address = parseaddr(_header(message, "From"))
    text, html = _body(message)
    in_reply_to = _msgids(_header(message, "In-Reply-To"))
    headers = "".join(f"{name}: {value}\n" for name, value in message.items())[:MAX_HEADER_CHARS]
    return ParsedMail(
        message_id=message_id[:255],
        in_reply_to=in_reply_to[0] if in_reply_to else "",
        references=_msgids(_header(message, "References")),
        subject=_header(message, "Subject")[:255],
        from_address=from_address.lower(),
        from_name=from_name,
        to=_addresses(message, "To"),
        cc=_addresses(message, "Cc"),
        text=text,
        html=html,
        attachments=_attachments(message),
        auto_reply=_is_auto_reply(message),
        bounce=_bounce(message),
        raw_headers=headers,
    )


# Lines that start the quoted history in a reply: "On Mon, ... wrote:", "Am ... schrieb ...:", Outlook's separator.
QUOTE_INTRO_RE = re.compile(
    r"^(On .{4,200} wrote:|Am .{4,200} schrieb .{1,200}:|From: .+"
    r"|-{2,}\s*Original Message\s*-{2,}|-{2,}\s*Ursprüngliche Nachricht\s*-{2,})\s*$",
    re.IGNORECASE,
)


def split_quoted(text: str) -> tuple[str, str]:
    """The new part of a reply and the quoted history below it (shown collapsed)."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        stripped = line.strip()
        if QUOTE_INTRO_RE.match(stripped) or (
            stripped.startswith(">")
            and all(not rest.strip() or rest.lstrip().startswith(">") for rest in lines[index:])
        ):
            if index == 0:
                break
            return "\n".join(lines[:index]).rstrip(), "\n".join(lines[index:]).strip()
    return text.strip(), ""
