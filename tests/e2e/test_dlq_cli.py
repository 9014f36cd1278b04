"""`syncctl dlq discard`: a dead letter the operator drops is kept, marked with who and why,
and no longer listed (but with --all), counted or replayed."""

from __future__ import annotations

import getpass
import json

from sync_pipeline.state import deadletters
from sync_pipeline.state.db import engine_for
from tests.conftest import syncctl

FLOW = "approvals_to_wecom"


def letter(env: dict[str, str], source_id: str) -> int:
    with engine_for(env["DATABASE_URL"]).begin() as conn:
        deadletters.add(conn, FLOW, None, [(source_id, {"id": source_id}, "no account", "X")])
        [found] = [d for d in deadletters.open_letters(conn, FLOW) if d.source_id == source_id]
    return found.id


def listed(env: dict[str, str], *options: str) -> dict[int, dict[str, object]]:
    result = syncctl("dlq", "list", "--json", *options, env=env)
    assert result.returncode == 0, result.stderr
    return {row["id"]: row for row in json.loads(result.stdout)}


def test_given_a_discard_the_letter_is_kept_with_who_and_why_and_no_longer_open(
    migrated,
) -> None:
    dropped, kept = letter(migrated, "1001"), letter(migrated, "1002")

    result = syncctl(
        "dlq",
        "discard",
        str(dropped),
        "--reason",
        "left the company",
        "--by",
        "alice",
        env=migrated,
    )

    assert result.returncode == 0, result.stderr
    assert list(listed(migrated)) == [kept]
    shown = listed(migrated, "--all")[dropped]
    assert (shown["state"], shown["discarded_by"], shown["discard_reason"]) == (
        "discarded",
        "alice",
        "left the company",
    )
    with engine_for(migrated["DATABASE_URL"]).connect() as conn:
        assert deadletters.count_open(conn, FLOW) == 1


def test_given_no_by_the_discard_names_the_os_user(migrated) -> None:
    dropped = letter(migrated, "1001")

    syncctl("dlq", "discard", str(dropped), "--reason", "duplicate", env=migrated)

    assert listed(migrated, "--all")[dropped]["discarded_by"] == getpass.getuser()


def test_given_a_letter_that_is_not_open_discard_leaves_it_and_exits_1(migrated) -> None:
    dropped = letter(migrated, "1001")
    syncctl("dlq", "discard", str(dropped), "--reason", "first", "--by", "alice", env=migrated)

    again = syncctl("dlq", "discard", str(dropped), "9999", "--reason", "again", env=migrated)

    assert again.returncode == 1
    assert f"not open, left alone: {dropped}, 9999" in again.stderr
    assert listed(migrated, "--all")[dropped]["discard_reason"] == "first"


def test_given_no_reason_discard_is_refused(migrated) -> None:
    dropped = letter(migrated, "1001")

    result = syncctl("dlq", "discard", str(dropped), "--reason", " ", env=migrated)

    assert result.returncode == 2
    assert list(listed(migrated)) == [dropped]
