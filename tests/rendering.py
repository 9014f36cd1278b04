"""What a markdown reader makes of text we send: its structure and its visible text.

markdown-it-py in CommonMark mode with GFM's strikethrough and tables, raw HTML on (so a
Feishu `<at>` or a `<font>` tag shows as an html token). The IM clients' own readers are
subsets of this, so text that this reads as one plain paragraph is plain text to them too.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

READER = MarkdownIt("commonmark").enable(["strikethrough", "table"])
PLAIN_SHAPE = ("paragraph_open", "inline", "paragraph_close")
TEXT_TOKENS = frozenset({"text", "softbreak"})


def _tokens(markdown: str) -> Iterator[Token]:
    for token in READER.parse(markdown):
        yield token
        yield from token.children or ()


def shape(markdown: str) -> list[str]:
    """Every block and inline token's type, text left out."""
    return [token.type for token in _tokens(markdown) if token.type not in TEXT_TOKENS]


def visible(markdown: str) -> str:
    """The text a reader shows, line breaks as newlines."""
    return "".join(
        "\n" if token.type == "softbreak" else token.content
        for token in _tokens(markdown)
        if token.type in TEXT_TOKENS
    )


def is_plain(markdown: str) -> bool:
    """One paragraph of text and line breaks (or nothing): no link, mention, tag, emphasis,
    code, heading, list, quote or second block."""
    found = shape(markdown)
    return found in ([], list(PLAIN_SHAPE))


def feishu_markdown(card: Mapping[str, Any]) -> list[str]:
    """Every markdown string of a Feishu card (JSON 1.0): markdown elements and lark_md texts."""
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            if node.get("tag") in ("markdown", "lark_md") and isinstance(node.get("content"), str):
                found.append(node["content"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(card)
    return found
