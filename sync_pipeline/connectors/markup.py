"""Outside text into each vendor's markup: it reads as itself, never as markup, and fits.

Every value a connector puts into a message or card (a title, a form field, a person's name,
an approver's comment, the text a flow's template made) is plain text written by someone we
do not trust. Our own markup (bold labels, buttons, the link to the OA) stays markup; the value
goes through the escape of the language it lands in, so it can never make a link, a mention,
a button or a block of its own. One `Markup` value per language; a new one (Slack's mrkdwn:
`&`, `<`, `>` as entities, which also disarms `<!channel>`, `<@U...>` and `<url|text>`) is
one more table here.

What each language reads, and how the escape neutralises it:

- Feishu card markdown and `lark_md` (the `markdown` element and `lark_md` text of card JSON
  1.0): `**bold**`, `*italic*`, `~~strike~~`, `[text](url)`, `![hover](img_key)`,
  `<at id=all>`, `<at id=ou_...>`, `<at email=...>`, `<font color=...>`, `<a>`, `<link>`,
  `<text_tag>`, code spans and fences, and at the start of a line headings, lists, quotes and
  rules; HTML character references are decoded. Feishu documents the escape: a character
  written as an HTML numeric reference (`&#60;` for `<`) is shown as that character. So
  ``& < > * _ ~ ` [ ] \\ |`` become references everywhere, and `# - + =` or an ordered list's
  delimiter (`1.`, `1)`) at the start of a line. Emoji codes (`:DONE:`) stay: an emoji is
  never a link, a mention or a button.
- DingTalk markdown (markdown messages, ActionCard, and any card template variable a
  template may show in a markdown component): headings, `>` quotes, `**bold**`, `*italic*`,
  links, images, lists, `<font color>` and `<br>` (HTML it renders), and `@mobile`, which is
  a mention only when the message lists that mobile in `at` (we never list anyone). WeCom
  markdown: headings, `**bold**`, `[text](url)`, `` `code` ``, `>` quotes,
  `<font color="info">` and `<@userid>` mentions. Neither documents an escape, and whether
  their clients honour backslashes or references is unconfirmed, so the characters that
  open syntax become their full-width forms (``＆ ＜ ＊ ＿ ～ ｀ ［ ］ ＼ ｜`` everywhere,
  ``＃ ＞ － ＋ ＝`` opening a line, ``．`` or ``）`` after a list number), which no markdown
  reads as syntax: the text reads the same shown as markdown or as plain text, and nothing
  rests on an undocumented escape.
- WeCom text messages: plain, except `<a href="...">` links (WeCom's own example) and
  `$userName=...$` translation, which applies only with `enable_id_trans` (never set here).
  `<` becomes `＜`, so no tag can open.
- Slack mrkdwn (a message's `text`, section and context blocks): `*bold*`, `_italic_`,
  `~strike~`, code, `>` quotes, and the angle-bracket forms `<url|text>`, `<@U...>`,
  `<#C...>`, `<!here>`; Slack's own rule is to escape `&`, `<` and `>` as `&amp;`, `&lt;`,
  `&gt;` (docs.slack.dev "Formatting text for app surfaces"), which opens no link, mention or
  element; a block's `plain_text` (headers, button labels) is plain.
- Plain text: Feishu's `plain_text` (card titles, buttons) and `post` text elements, WeCom
  template card fields, DingTalk work notifications (`msgtype: text`) and Agora Chat (text
  messages, and a custom message's `customExts`: data the client app shows as it likes).
  Nothing in them is interpreted, so nothing is escaped; they are only normalised and cut.

Every language first normalises the text the same way: what PostgreSQL refuses becomes U+FFFD
(`untrusted.clean_text`), other control characters become U+FFFD, every line separator
(`\\r\\n`, `\\r`, U+2028...) becomes `\\n`, and the bidirectional embedding, override and
isolate controls (U+202A-U+202E, U+2066-U+2069) are dropped: invisible, and one left open
would reorder our own text after it. Zero-width characters and the LRM/RLM marks stay (emoji
and several scripts need them; they reorder nothing). In a markdown language a line's leading
and trailing blanks (indented code, hard breaks) and blank lines (new paragraphs) are dropped,
so outside text is one paragraph. One-line values (titles, names, labels) join their lines
with a space.

A bare address (`http://...`) stays visible text; a client may still make it clickable, as it
would in a message anyone could type. What outside text cannot do is hide a target behind
other words, mention anyone, or add an element.

Lengths: `fit` cuts the escaped value to a limit, measured in characters or in UTF-8 bytes of
the value inside a JSON string (what a vendor counting its request body counts), ending it
with "…", so a 1 MB title is sent cut rather than refused. The cut falls between two escaped
characters, never inside a reference. Work is linear and bounded by the limit, whatever the
input's size.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

from sync_pipeline.untrusted import REPLACEMENT, clean_text

ELLIPSIS = "…"
MAX_LINK_CHARS = 2048  # a link we put behind a button or under a message; longer ones are dropped

_NEWLINES = re.compile("\r\n|[\r\v\f\x85\u2028\u2029]")
_CONTROLS = re.compile("[\x01-\x08\x0e-\x1f\x7f-\x84\x86-\x9f]")
_BIDI_CONTROLS = re.compile("[\u202a-\u202e\u2066-\u2069]")
_ORDERED = re.compile(r"[0-9]{1,9}[.)](?=[ \t]|$)")  # CommonMark: 1-9 digits open a list
_LINK_REFUSED = re.compile(r"[\s<>\"`\\\x00-\x1f\x7f]")


class Unit(StrEnum):
    CHARS = "chars"
    BYTES = "bytes"  # UTF-8 bytes of the text inside a JSON string


@dataclass(frozen=True)
class Markup:
    """One vendor's markup: how each character of outside text is written so it reads as
    itself. `everywhere` applies to every character, `line_start` to a line's first one,
    `delimiters` to the `.` or `)` after the digits that open a line (an ordered list);
    `blocks` says the language reads lines as blocks, so indentation and blank lines go."""

    name: str
    everywhere: Mapping[str, str] = field(default_factory=dict)
    line_start: Mapping[str, str] = field(default_factory=dict)
    delimiters: Mapping[str, str] = field(default_factory=dict)
    blocks: bool = False

    def fit(
        self, value: object, limit: int, unit: Unit = Unit.CHARS, *, one_line: bool = False
    ) -> str:
        """`value` as text in this markup, at most `limit` long, ending in "…" if cut."""
        raw = "" if value is None else str(value)
        window = raw[: 4 * limit + 64]  # more than fits: what is kept takes 1 unit a character
        pieces = list(self._pieces(_normalise(window, one_line=one_line, blocks=self.blocks)))
        size = _SIZES[unit]
        if len(window) == len(raw) and sum(size(p) for p in pieces) <= limit:
            return "".join(pieces)
        budget = limit - size(ELLIPSIS)
        kept: list[str] = []
        for piece in pieces:
            budget -= size(piece)
            if budget < 0:
                break
            kept.append(piece)
        return "".join(kept).rstrip() + ELLIPSIS if limit >= size(ELLIPSIS) else ""

    def _pieces(self, text: str) -> Iterator[str]:
        """Each character of normalised text as this markup writes it."""
        for number, line in enumerate(text.split("\n")):
            if number:
                yield "\n"
            ordered = _ORDERED.match(line) if self.delimiters else None
            delimiter = ordered.end() - 1 if ordered else -1
            for index, char in enumerate(line):
                if index == 0:
                    yield self.line_start.get(char) or self.everywhere.get(char, char)
                elif index == delimiter:
                    yield self.delimiters[char]
                else:
                    yield self.everywhere.get(char, char)


def link(value: object) -> str | None:
    """An http(s) address we may put behind a button or under a message, else None: a
    `javascript:` or app-scheme link, or one that could break out of markup, is not shown."""
    url = "" if value is None else str(value).strip()
    if not url or len(url) > MAX_LINK_CHARS or _LINK_REFUSED.search(url):
        return None
    parts = urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _normalise(text: str, *, one_line: bool, blocks: bool) -> str:
    text = _NEWLINES.sub("\n", clean_text(text))
    text = _BIDI_CONTROLS.sub("", _CONTROLS.sub(REPLACEMENT, text))
    if not (one_line or blocks):
        return text
    lines = (stripped for line in text.split("\n") if (stripped := line.strip(" \t")))
    return (" " if one_line else "\n").join(lines)


def _json_bytes(piece: str) -> int:
    """UTF-8 bytes of `piece` inside a JSON string: quote, backslash, newline and tab take
    two (other controls never reach here)."""
    extra = sum(piece.count(c) for c in '"\\\n\t') if not piece.isalnum() else 0
    return len(piece.encode("utf-8")) + extra


_SIZES = {Unit.CHARS: len, Unit.BYTES: _json_bytes}


def measure(text: str, unit: Unit) -> int:
    """How long `text` is in `unit`, as `fit` counts."""
    return _SIZES[unit](text)


def _references(chars: str) -> dict[str, str]:
    return {char: f"&#{ord(char)};" for char in chars}


def _full_width(chars: str) -> dict[str, str]:
    """ASCII punctuation to its full-width form (U+FF01-U+FF5E mirror U+0021-U+007E)."""
    return {char: chr(ord(char) + 0xFEE0) for char in chars}


LINE_OPENERS = "#>-+="  # headings, quotes, list items, rules and setext underlines

FEISHU_MARKDOWN = Markup(
    "feishu_markdown",
    everywhere=_references("&<>*_~`[]\\|"),
    line_start=_references(LINE_OPENERS),
    delimiters=_references(".)"),
    blocks=True,
)
DINGTALK_MARKDOWN = Markup(
    "dingtalk_markdown",
    everywhere=_full_width("&<*_~`[]\\|"),
    line_start=_full_width(LINE_OPENERS),
    delimiters=_full_width(".)"),
    blocks=True,
)
WECOM_MARKDOWN = Markup(
    "wecom_markdown",
    everywhere=_full_width("&<*_~`[]\\|"),
    line_start=_full_width(LINE_OPENERS),
    delimiters=_full_width(".)"),
    blocks=True,
)
WECOM_TEXT = Markup("wecom_text", everywhere=_full_width("<"))
# Slack mrkdwn (section text, a message's `text`): Slack documents escaping `&`, `<` and `>` as
# `&amp;`, `&lt;`, `&gt;` and nothing else, which disarms `<!channel>`, `<@U...>` and
# `<url|text>`; its bold, italic and strike marks only style words.
SLACK_MRKDWN = Markup("slack_mrkdwn", everywhere={"&": "&amp;", "<": "&lt;", ">": "&gt;"})
PLAIN = Markup("plain")  # Feishu plain_text and post text, WeCom card fields, DingTalk text, Agora
# Matrix's `formatted_body` is HTML (org.matrix.custom.html): outside text is escaped as HTML
# text and attribute values are, so it can open no tag, link or mention (a pill is an <a>).
MATRIX_HTML = Markup(
    "matrix_html", everywhere={"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}
)
