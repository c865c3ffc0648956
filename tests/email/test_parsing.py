"""The parsing and sanitising rules on raw bytes, without the database."""

from __future__ import annotations

import pytest

from channels_app.email.parsing import parse_mail, split_quoted
from channels_app.email.sanitize import html_from_text, remote_image_count, sanitize_html
from tests.email.mail import bounce, mail


def test_headers_and_addresses_are_read():
    parsed = parse_mail(
        mail(
            sender='"Doe, Jane" <Jane@Example.com>',
            to="a@x.test, B <b@x.test>",
            in_reply_to="<p@x>",
            references="<r1@x> <r2@x>",
            message_id="<m@x>",
        )
    )
    assert parsed.message_id == "<m@x>"
    assert parsed.from_address == "jane@example.com" and parsed.from_name == "Doe, Jane"
    assert parsed.to == ["a@x.test", "b@x.test"]
    assert parsed.thread_ids == ["<p@x>", "<r2@x>", "<r1@x>"]


def test_mail_without_message_id_gets_a_stable_one():
    raw = mail().replace(b"Message-ID:", b"X-Old-ID:")
    assert parse_mail(raw).message_id == parse_mail(raw).message_id
    assert parse_mail(raw).message_id.endswith("@missing-id.parley.invalid>")


@pytest.mark.parametrize(
    ("subject", "token"),
    [("Re: Booking [#K7Q2M9XA]", "K7Q2M9XA"), ("AW: [#K7Q2M9XA] x", "K7Q2M9XA"), ("[#k7q2m9xa]", ""), ("[#O0I1L]", "")],
)
def test_subject_token(subject, token):
    assert parse_mail(mail(subject=subject)).subject_token == token


@pytest.mark.parametrize(
    ("headers", "auto"),
    [
        ({"Auto-Submitted": "no"}, False),
        ({"Auto-Submitted": "auto-generated"}, True),
        ({"Precedence": "bulk"}, True),
        ({"X-Autorespond": "1"}, True),
        ({}, False),
    ],
)
def test_auto_reply_recognition(headers, auto):
    assert parse_mail(mail(headers=headers)).auto_reply is auto


def test_bounce_names_the_original_and_the_reason():
    parsed = parse_mail(bounce(original_message_id="<orig@parley.test>"))
    assert parsed.bounce.original_message_id == "<orig@parley.test>"
    assert "jane@example.com: smtp; 550 5.1.1 No such user" in parsed.bounce.reason


def test_plain_multipart_report_of_another_kind_is_not_a_bounce():
    raw = bounce(original_message_id="<orig@parley.test>").replace(
        b"report-type=delivery-status", b"report-type=disposition-notification"
    )
    assert parse_mail(raw).bounce is None


@pytest.mark.parametrize(
    ("text", "new", "quoted"),
    [
        (
            "Thanks!\n\nOn Mon, 1 May 2026, Anna <a@x> wrote:\n> old",
            "Thanks!",
            "On Mon, 1 May 2026, Anna <a@x> wrote:\n> old",
        ),
        ("Danke!\n\nAm 1. Mai 2026 schrieb Anna <a@x>:\n> alt", "Danke!", "Am 1. Mai 2026 schrieb Anna <a@x>:\n> alt"),
        ("Yes\n> quoted\n> more", "Yes", "> quoted\n> more"),
        ("> inline quote\nmy answer\n> trailing", "> inline quote\nmy answer", "> trailing"),
        ("Just text", "Just text", ""),
    ],
)
def test_split_quoted(text, new, quoted):
    assert split_quoted(text) == (new, quoted)


@pytest.mark.parametrize(
    "hostile",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(1)">',
        '<a href="javascript:alert(1)">x</a>',
        '<a href="data:text/html,<script>alert(1)</script>">x</a>',
        '<img src="data:text/html;base64,PHNjcmlwdD4=">',
        "<svg><script>alert(1)</script></svg>",
        '<iframe src="https://evil.example"></iframe>',
        '<form action="https://evil.example"><input></form>',
        '<div style="background:url(javascript:alert(1))">x</div>',
        '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    ],
)
def test_sanitiser_drops_everything_active(hostile):
    clean = sanitize_html(f"<p>ok</p>{hostile}").lower()
    for marker in ("<script", "onerror", "javascript:", "data:text", "<iframe", "<form", "<input", "<meta", "alert(1)"):
        assert marker not in clean, (marker, clean)


def test_sanitiser_keeps_formatting_and_counts_remote_images():
    clean = sanitize_html('<p style="color: red; position: fixed">Hi <b>there</b><img src="https://x.test/a.png"></p>')
    assert '<p style="color:red">' in clean.replace(": ", ":").replace(";", "")
    assert "<b>there</b>" in clean
    assert remote_image_count(clean) == 1


def test_agent_text_becomes_simple_html():
    html = html_from_text("Hello **Jane**,\nsee https://parley.test/b?x=1 <script>\n\n*Thanks*")
    assert html == (
        '<p>Hello <strong>Jane</strong>,<br>\nsee <a href="https://parley.test/b?x=1">https://parley.test/b?x=1</a>'
        " &lt;script&gt;</p>\n<p><em>Thanks</em></p>"
    )
