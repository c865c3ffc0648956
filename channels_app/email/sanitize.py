"""HTML mail made safe to show: nh3 keeps formatting and drops everything that could act.

Three layers stand between a hostile mail and the agent: this allow-list
(no script, no event handlers, no forms, no javascript: URLs), the frame's own
Content-Security-Policy (no script at all, images only from ``data:`` until the
agent allows remote ones), and the ``sandbox`` on both the iframe and the CSP.
"""

from __future__ import annotations

import html as html_lib
import re

import nh3

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "code", "col", "colgroup", "dd", "del", "details",
    "div", "dl", "dt", "em", "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "li", "ol", "p",
    "pre", "q", "s", "small", "span", "strike", "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot",
    "th", "thead", "tr", "tt", "u", "ul",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "*": {"align", "class", "dir", "lang", "style", "title", "valign", "width", "height", "bgcolor"},
    "a": {"href", "name"},
    "img": {"src", "alt"},
    "font": {"color", "face", "size"},
    "table": {"border", "cellpadding", "cellspacing"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan"},
    "ol": {"start", "type"},
}
ALLOWED_STYLE_PROPERTIES = {
    "background-color", "border", "border-bottom", "border-collapse", "border-color", "border-left", "border-right",
    "border-top", "color", "display", "font", "font-family", "font-size", "font-style", "font-weight", "height",
    "line-height", "margin", "margin-bottom", "margin-left", "margin-right", "margin-top", "max-width", "padding",
    "padding-bottom", "padding-left", "padding-right", "padding-top", "text-align", "text-decoration", "vertical-align",
    "white-space", "width",
}  # fmt: skip
# Everything else (javascript:, vbscript:, file:, ...) is dropped; cid: shows inline parts, data: small images.
URL_SCHEMES = {"http", "https", "mailto", "tel", "cid", "data"}

REMOTE_IMG_RE = re.compile(r"<img\b[^>]*\bsrc=\"(?:https?:)?//", re.IGNORECASE)
# Where the quoted history starts in HTML replies of common mail programs.
QUOTE_START_RE = re.compile(
    r"<(?:blockquote\b[^>]*type=\"?cite|div\b[^>]*class=\"?[^\">]*(?:gmail_quote|moz-cite-prefix)|"
    r"div\b[^>]*id=\"?(?:divRplyFwdMsg|appendonsend)|blockquote\b)",
    re.IGNORECASE,
)


def _data_urls_only_for_images(element: str, attribute: str, value: str) -> str | None:
    # data: is fine for an <img>, never for a link (a data:text/html link is a page of its own).
    if attribute == "href" and value.strip().lower().startswith("data:"):
        return None
    if (
        attribute == "src"
        and value.strip().lower().startswith("data:")
        and not value.strip().lower().startswith("data:image/")
    ):
        return None
    return value


def sanitize_html(raw: str, *, collapse_quotes: bool = True, quote_label: str = "…") -> str:
    """Safe HTML for the frame; the quoted history is wrapped in a closed ``<details>``."""
    if collapse_quotes:
        match = QUOTE_START_RE.search(raw)
        if match and match.start() > 0:
            summary = html_lib.escape(quote_label)
            head, quoted = raw[: match.start()], raw[match.start() :]
            raw = f'{head}<details class="quoted"><summary>{summary}</summary>{quoted}</details>'
    return nh3.clean(
        raw,
        tags=ALLOWED_TAGS,
        clean_content_tags={"script", "style", "title", "head", "template", "textarea", "select", "noscript"},
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_data_urls_only_for_images,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        filter_style_properties=ALLOWED_STYLE_PROPERTIES,
        strip_comments=True,
    )


def remote_image_count(clean_html: str) -> int:
    return len(REMOTE_IMG_RE.findall(clean_html))


def html_from_text(text: str) -> str:
    """The HTML part of a mail an agent wrote: paragraphs, line breaks, **bold**, *italic* and links."""
    escaped = html_lib.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    escaped = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", escaped)
    escaped = re.sub(r"(https?://[^\s<]+[^\s<.,;:!?)])", r'<a href="\1">\1</a>', escaped)
    paragraphs = [p.replace("\n", "<br>\n") for p in re.split(r"\n\s*\n", escaped.strip()) if p.strip()]
    return "\n".join(f"<p>{p}</p>" for p in paragraphs)
