"""records.PageTrail: the tokens one read has followed, which is what keeps a pull from going
round forever when a source hands a page token back (steps.pull)."""

from __future__ import annotations

import pytest

from sync_pipeline.errors import PagingLoop
from sync_pipeline.records import PageTrail


def test_new_tokens_and_the_end_pass_as_they_are() -> None:
    trail = PageTrail("feishu", "approvals")

    assert [trail.follow(t) for t in ("a", "b", None)] == ["a", "b", None]


def test_a_token_followed_before_stops_the_read_naming_source_and_stream() -> None:
    trail = PageTrail("feishu", "approvals")
    trail.follow("a")
    trail.follow("b")

    with pytest.raises(PagingLoop) as caught:
        trail.follow("a")

    assert (caught.value.vendor, caught.value.stream) == ("feishu", "approvals")
    assert caught.value.code == "page_token_repeated"


def test_the_token_a_resumed_read_starts_from_counts_as_followed() -> None:
    trail = PageTrail("oa", "approvals", start="resume-here")

    with pytest.raises(PagingLoop):
        trail.follow("resume-here")
