"""The desktop's message text filter: escaped, links made safe, and cheap for the cycle collector."""

from __future__ import annotations

from conversations.templatetags.desk import linkify
from tests.garbage import cyclic_garbage


def test_urls_and_email_addresses_become_links_and_the_rest_is_escaped():
    html = linkify("<b>Hi</b> see www.example.com. Or write to anna@example.com, or https://parley.example/x?a=1&b=2.")

    assert html.startswith("&lt;b&gt;Hi&lt;/b&gt; see ")
    assert (
        '<a href="http://www.example.com" rel="nofollow noopener noreferrer" target="_blank">www.example.com</a>.'
        in html
    )
    assert '<a href="mailto:anna@example.com">anna@example.com</a>,' in html
    assert '<a href="https://parley.example/x?a=1&amp;b=2" rel="nofollow noopener noreferrer" target="_blank">' in html


def test_words_with_a_dot_or_an_at_sign_that_are_no_address_stay_text():
    assert linkify("Thanks. Booking no. 12.5 @ 3pm, ref a.b@c") == "Thanks. Booking no. 12.5 @ 3pm, ref a.b@c"


def test_line_breaks_are_kept_and_empty_text_is_empty():
    assert linkify("one\r\ntwo\nthree") == "one<br>two<br>three"
    assert linkify(None) == ""


def test_sentences_leave_nothing_for_the_cycle_collector():
    # Django's own email check raised a self-referencing ValidationError for every word with a dot.
    text = "Your booking is confirmed. The new date is Friday. Thanks for waiting."

    garbage = cyclic_garbage(lambda: [linkify(text) for _ in range(20)])

    assert not garbage, garbage.most_common(5)
