"""Effect claims as the in-flight wait needs them (state/effects.py): a failed key taken again
is pending from that claim, so a concurrent attempt sees it in flight; a key someone else is
making keeps its claim time whoever else claims it; claims never tried are given back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from sync_pipeline.state import effects
from sync_pipeline.state.db import engine_for
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.schema import effects as effects_table


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    return engine_for(database_url)


def aged(engine, key: str, seconds: int) -> None:
    """Move a key's claim `seconds` into the past."""
    with engine.begin() as conn:
        conn.execute(
            effects_table.update()
            .where(effects_table.c.key == key)
            .values(updated_at=sa.func.now() - sa.text(f"interval '{seconds} seconds'"))
        )


def test_given_a_failed_effect_claimed_again_then_it_is_pending_from_this_claim(engine) -> None:
    with engine.begin() as conn:
        effects.claim(conn, "f", "wecom", ["k1"])
        effects.finish(conn, "k1", effects.EffectStatus.FAILED, error="rate limited")
    aged(engine, "k1", 600)
    with engine.connect() as conn:
        failed = effects.get(conn, ["k1"])["k1"]

    with engine.begin() as conn:
        again = effects.claim(conn, "f", "wecom", ["k1"])["k1"]

    assert again.status is effects.EffectStatus.PENDING
    assert again.claimed_at > failed.claimed_at
    assert again.attempts == 2


def test_given_a_pending_effect_claimed_by_another_attempt_then_its_claim_time_stays(
    engine,
) -> None:
    with engine.begin() as conn:
        effects.claim(conn, "f", "wecom", ["k1"])
    aged(engine, "k1", 600)
    with engine.connect() as conn:
        before = effects.get(conn, ["k1"])["k1"]

    with engine.begin() as conn:
        after = effects.claim(conn, "f", "wecom", ["k1"])["k1"]

    assert (after.status, after.claimed_at) == (effects.EffectStatus.PENDING, before.claimed_at)
    assert after.attempts == before.attempts + 1


def test_given_claims_never_tried_then_release_frees_them_and_keeps_what_was_made(
    engine,
) -> None:
    with engine.begin() as conn:
        effects.claim(conn, "f", "wecom", ["made", "untried"])
        effects.finish(conn, "made", effects.EffectStatus.DONE, vendor_ref="msg-1")

    with engine.begin() as conn:
        effects.release(conn, ["made", "untried"], "not tried")
        found = effects.get(conn, ["made", "untried"])

    assert found["made"].status is effects.EffectStatus.DONE
    assert (found["untried"].status, found["untried"].last_error) == (
        effects.EffectStatus.FAILED,
        "not tried",
    )
