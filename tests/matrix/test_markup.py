"""Matrix's HTML body escapes outside text; a reply or reaction reads as a decision only when
it says one."""

from __future__ import annotations

import pytest

from sync_pipeline.connectors.base import Decision
from sync_pipeline.connectors.buttons import matrix as buttons
from sync_pipeline.connectors.markup import MATRIX_HTML


def test_html_special_characters_become_references() -> None:
    escaped = MATRIX_HTML.fit("<a href=\"x\">@room</a> & 'q'", 200)

    assert escaped == "&lt;a href=&quot;x&quot;&gt;@room&lt;/a&gt; &amp; &#39;q&#39;"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("approve", (Decision.APPROVE, "")),
        ("Reject: dates overlap", (Decision.REJECT, "dates overlap")),
        ("> <@bot:hs> Leave request\n\napprove looks fine", (Decision.APPROVE, "looks fine")),
        ("I approve of this", None),
        ("", None),
        (None, None),
    ],
)
def test_a_reply_decides_by_its_first_word(body: object, expected: object) -> None:
    assert buttons.parse_reply(body) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [("✅", Decision.APPROVE), ("👍", Decision.APPROVE), ("❌", Decision.REJECT), ("🎉", None)],
)
def test_a_reaction_decides_by_its_key(key: str, expected: Decision | None) -> None:
    assert buttons.parse_reaction(key) == expected
