"""Hostile text for the property tests of issue 9: what outside content may hold.

Characters PostgreSQL or UTF-8 refuse (NUL, lone surrogates: JSON carries them as `\\ud800`
escapes), invisible and reordering ones (right-to-left marks and overrides, isolates, a byte
order mark, zero-width spaces, line separators), and the markup of every vendor we write to:
Markdown and Feishu's lark_md (links, images, emphasis, code, headings, lists, quotes),
Feishu's and Slack's mentions, HTML that IM clients render, character references. Used by
tests/events/test_property_records.py, tests/events/test_property_events.py and
tests/connectors/test_markup_structure.py.
"""

from __future__ import annotations

from hypothesis import strategies as st

MARKUP = "*_[]()<>#@`~|\\!{}&\"'\n\t"  # Markdown, lark_md, HTML, WeCom and Slack alike
HOSTILE = ["\x00", "\ud800", "\udc00", "\u200f", "\u202e", "\u2066", "\ufeff", "\ufffd", *MARKUP]

# Pieces of markup in every vendor's languages, and characters that test the normalisation.
PIECES = [
    *"[]()<>*_~`#-+=!|\\&:@$.\n\r\t 1aZ假",
    "\x00",
    "\ud800",
    "\u202e",
    "\u2066",
    "\u200b",
    "\u2028",
    "<at id=all></at>",
    '<at user_id="all"></at>',
    "<@all>",
    "[Approve](http://evil.example)",
    "![x](http://evil.example/x.png)",
    "<http://evil.example>",
    '<a href="http://evil.example">x</a>',
    "<font color=red>",
    "&#60;",
    "**",
    "```",
    "\n# ",
    "\n- ",
    "\n1. ",
    "\n> ",
    "\n    ",
    "\n\n",
]

characters = st.one_of(st.characters(exclude_categories=()), st.sampled_from(HOSTILE))
text = st.text(characters, max_size=30)
# Text made of whole pieces of markup as well as single characters.
markup_text = st.lists(st.sampled_from(PIECES) | characters, max_size=30).map("".join)
