"""One escape per vendor markup: hostile text (the OWASP kind, per language) reads as itself.

Each markdown language's output is read back with a CommonMark reader (tests/rendering.py):
it must be one plain paragraph whose visible text is the input. Feishu's escape is lossless;
DingTalk's and WeCom's use full-width look-alikes, so their visible text is the input with
those characters folded back to ASCII.
"""

from __future__ import annotations

import time

import pytest

from sync_pipeline.connectors.markup import (
    DINGTALK_MARKDOWN,
    ELLIPSIS,
    FEISHU_MARKDOWN,
    PLAIN,
    WECOM_MARKDOWN,
    WECOM_TEXT,
    Markup,
    Unit,
    link,
)
from tests.rendering import is_plain, shape, visible

BIG = 10**9  # no cut

# Strings that make markup in one markdown or another: links in each syntax, autolinks,
# mentions (incl. all/everyone), tags, entities, nested emphasis, code, blocks after a newline.
HOSTILE = [
    "[Approve now](http://evil.example)",
    "[Approve now]( http://evil.example 'title')",
    "![x](http://evil.example/pixel.png)",
    "[ref][1]\n[1]: http://evil.example",
    "[Approve]($urlVal)",
    "<http://evil.example>",
    "<mailto:boss@evil.example>",
    '<a href="http://evil.example">Approve</a>',
    "<link url='http://evil.example'>Approve</link>",
    "<at id=all></at>",
    '<at user_id="all"></at> <at id=ou_123></at> <at email=a@b.c></at>',
    "<@all> <@zhangsan> @all @everyone",
    '<font color="warning">URGENT</font> <font color=red>red</font>',
    "<script>alert(1)</script><img src=x onerror=alert(1)>",
    "<!-- hidden --> <br> <text_tag color='red'>x</text_tag>",
    "&lt;at id=all&gt; &#60;at id=all&#62; &amp; &copy; &#x3C;",
    "**bold** __bold__ *it* _it_ ***both*** **_nested *deep*_**",
    "~~strike~~ ~one~",
    "`code` ``co`de`` ```fence```",
    "```\nfenced\n```",
    "~~~\nfenced\n~~~",
    "    indented code",
    "\tindented code",
    "line\n# Heading\n## Heading",
    "line\n> quote\n>> nested",
    "line\n- item\n+ item\n* item",
    "line\n1. first\n2) second",
    "Title\n===\nTitle\n---",
    "line\n***\n___\n- - -",
    "| a | b |\n|---|---|\n| c | d |",
    "a | b\n:--|--:\nc | d",
    "hard  \nbreak\\\nbreak",
    "para\n\n\n\nsecond para",
    "back\\slash \\*not\\* \\[x\\]",
    "C:\\Users\\evil",
    "1 < 2 > 0 & a*b*c 2*3*4",
]

LANGUAGES = [FEISHU_MARKDOWN, DINGTALK_MARKDOWN, WECOM_MARKDOWN]


def unfold(text: str) -> str:
    """Full-width ASCII look-alikes back to ASCII."""
    return "".join(chr(ord(c) - 0xFEE0) if 0xFF01 <= ord(c) <= 0xFF5E else c for c in text)


def expected(text: str) -> str:
    """What a markdown escape keeps of `text`: its lines, without their blanks, blank lines
    dropped."""
    return "\n".join(line.strip(" \t") for line in text.split("\n") if line.strip(" \t"))


@pytest.mark.parametrize("markup", LANGUAGES, ids=lambda m: m.name)
@pytest.mark.parametrize("hostile", HOSTILE)
def test_given_markup_in_outside_text_the_escape_reads_as_one_plain_paragraph(
    markup: Markup, hostile: str
) -> None:
    escaped = markup.fit(hostile, BIG)

    assert is_plain(escaped), shape(escaped)
    assert unfold(visible(escaped)) == expected(hostile)


@pytest.mark.parametrize("hostile", HOSTILE)
def test_feishus_escape_loses_nothing(hostile: str) -> None:
    assert visible(FEISHU_MARKDOWN.fit(hostile, BIG)) == expected(hostile)


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        (
            "[Approve now](http://evil.example) <at id=all></at>",
            "&#91;Approve now&#93;(http://evil.example) &#60;at id=all&#62;&#60;/at&#62;",
        ),
        ("**x** & ~y~ `z`", "&#42;&#42;x&#42;&#42; &#38; &#126;y&#126; &#96;z&#96;"),
        ("# a\n- b\n1. c\n2) d\n=", "&#35; a\n&#45; b\n1&#46; c\n2&#41; d\n&#61;"),
        ("Leave #3 - 1.5 days", "Leave #3 - 1.5 days"),  # only at a line's start
    ],
)
def test_feishu_writes_syntax_characters_as_html_references(text: str, escaped: str) -> None:
    assert FEISHU_MARKDOWN.fit(text, BIG) == escaped


@pytest.mark.parametrize("markup", [DINGTALK_MARKDOWN, WECOM_MARKDOWN], ids=lambda m: m.name)
def test_dingtalk_and_wecom_markdown_write_syntax_characters_full_width(markup: Markup) -> None:
    text = "[Approve](http://evil.example) <@all> **now**\n# a\n> b\n1. c"

    assert markup.fit(text, BIG) == (
        "［Approve］(http://evil.example) ＜@all> ＊＊now＊＊\n＃ a\n＞ b\n1． c"
    )


def test_wecom_text_disarms_its_one_tag() -> None:
    text = '<a href="http://evil.example">Approve</a> [x](y) **z**'

    assert WECOM_TEXT.fit(text, BIG) == '＜a href="http://evil.example">Approve＜/a> [x](y) **z**'


@pytest.mark.parametrize("markup", [*LANGUAGES, WECOM_TEXT, PLAIN], ids=lambda m: m.name)
def test_given_bidi_controls_they_are_dropped_and_zero_width_characters_kept(
    markup: Markup,
) -> None:
    text = "a\u202eevil\u202c \u2067x\u2069 b\u200bc\u200d\u200e\u200f\u2060"

    assert markup.fit(text, BIG) == "aevil x b\u200bc\u200d\u200e\u200f\u2060"


@pytest.mark.parametrize("markup", [*LANGUAGES, WECOM_TEXT, PLAIN], ids=lambda m: m.name)
def test_given_control_characters_they_become_the_replacement_character(markup: Markup) -> None:
    assert markup.fit("a\x00b\x07c\x1bd\ud800e\x7f", BIG) == "a\ufffdb\ufffdc\ufffdd\ufffde\ufffd"


def test_plain_text_keeps_its_lines_with_every_line_break_as_a_newline() -> None:
    text = "a\r\nb\rc\u2028d\u2029e\x85f\vg\fh\n\n  i"

    assert PLAIN.fit(text, BIG) == "a\nb\nc\nd\ne\nf\ng\nh\n\n  i"


@pytest.mark.parametrize("markup", [*LANGUAGES, PLAIN], ids=lambda m: m.name)
def test_a_one_line_value_joins_its_lines_with_a_space(markup: Markup) -> None:
    assert markup.fit("Leave\n\n  request\r\n42 ", BIG, one_line=True) == "Leave request 42"


# -- lengths -----------------------------------------------------------------------------------
def test_given_text_over_the_limit_it_is_cut_with_an_ellipsis() -> None:
    assert PLAIN.fit("abcdefghij", 5) == "abcd" + ELLIPSIS
    assert PLAIN.fit("abcde", 5) == "abcde"


def test_the_cut_never_splits_a_reference() -> None:
    cut = FEISHU_MARKDOWN.fit("a" + "<" * 10, 11)

    assert cut == "a&#60;" + ELLIPSIS  # the next reference would not fit whole
    assert visible(cut) == "a<" + ELLIPSIS


def test_bytes_are_counted_as_utf8_inside_a_json_string() -> None:
    assert PLAIN.fit("假" * 11, 30, Unit.BYTES) == "假" * 9 + ELLIPSIS  # 27 + 3 bytes
    assert PLAIN.fit('"' * 10, 10, Unit.BYTES) == '"' * 3 + ELLIPSIS  # each is \" in JSON


@pytest.mark.parametrize("markup", [*LANGUAGES, WECOM_TEXT, PLAIN], ids=lambda m: m.name)
def test_given_a_megabyte_of_markup_the_fit_is_bounded_and_quick(markup: Markup) -> None:
    huge = "[x](http://evil.example) <at id=all></at> **b**\n# h\n" * 25_000  # 1.3 MB

    began = time.perf_counter()
    cut = markup.fit(huge, 4096, Unit.BYTES)
    took = time.perf_counter() - began

    assert len(cut.encode("utf-8")) <= 4096
    assert cut.endswith(ELLIPSIS)
    assert took < 1.0  # generous on a loaded 2-core machine; typical is a few ms


# -- links -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    ["https://oa.example/r/1?a=1&b=2", "http://127.0.0.1:18601/spa/workflow#/req?requestid=R1"],
)
def test_an_http_link_is_kept(url: str) -> None:
    assert link(url) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        "lark://applink.feishu.cn/client/chat",
        "data:text/html,<script>",
        "//evil.example/no-scheme",
        "http://",
        "https://evil.example/a b",
        'https://evil.example/")<at id=all>',
        "https://evil.example/\nsecond",
        "https://evil.example/" + "a" * 3000,
    ],
)
def test_a_link_that_is_not_plain_http_is_dropped(url: str | None) -> None:
    assert link(url) is None


@pytest.mark.parametrize("markup", LANGUAGES, ids=lambda m: m.name)
def test_a_dot_or_parenthesis_is_escaped_only_as_an_ordered_lists_delimiter(markup: Markup) -> None:
    assert markup.fit("... and (so on) 1.5 x)", BIG) == "... and (so on) 1.5 x)"
