"""The alert decision (pipeline/alerts.py `decide`, `due`): an alert fires once when what is
wrong has lasted its rule's for_s, resolves once when it is fine again, and owes exactly one
notice of each, whatever the number of evaluations or runs in between."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from sync_pipeline.config.alerts import AlertKind, Rule
from sync_pipeline.pipeline.alerts import Seen, decide, due, next_step, notice_of, sign
from sync_pipeline.state.alerts import Alert, AlertState

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
RULE = Rule("oa_down", AlertKind.VENDOR_DOWN, threshold=1, for_s=60, notify=("ops",))
DOWN = Seen("oa", True, "oa's circuit breaker is open: calls fail fast")
UP = Seen("oa", False)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def run(
    looks: list[tuple[float, Seen]], rule: Rule = RULE
) -> list[tuple[Alert, AlertState | None]]:
    """Each evaluation's alert and the notice it owes, a notice marked sent once owed (as
    delivery does), from no row at all."""
    alert: Alert | None = None
    seen: list[tuple[Alert, AlertState | None]] = []
    for seconds, look in looks:
        alert = decide(rule, alert, look, at(seconds))
        owed = due(alert)
        seen.append((alert, owed))
        if owed is AlertState.FIRING:
            alert = Alert(**{**alert.__dict__, "notified_firing": True})
        elif owed is AlertState.RESOLVED:
            alert = Alert(**{**alert.__dict__, "notified_resolved": True})
    return seen


def notices(looks: list[tuple[float, Seen]], rule: Rule = RULE) -> list[AlertState]:
    return [owed for _, owed in run(looks, rule) if owed is not None]


def test_given_something_wrong_for_less_than_for_s_then_it_is_pending_and_owes_nothing() -> None:
    [(alert, owed)] = run([(0, DOWN)])

    assert (alert.state, alert.since, owed) == (AlertState.PENDING, T0, None)


def test_given_something_wrong_for_for_s_then_it_fires_once_from_when_it_was_first_seen() -> None:
    looks = [(0, DOWN), (30, DOWN), (60, DOWN), (90, DOWN), (120, DOWN)]

    states = run(looks)

    assert [owed for _, owed in states] == [None, None, AlertState.FIRING, None, None]
    assert states[2][0].since == T0
    assert states[2][0].epoch == 1


def test_given_a_firing_alert_fine_again_then_it_resolves_once() -> None:
    looks = [(0, DOWN), (60, DOWN), (90, UP), (120, UP), (150, UP)]

    states = run(looks)

    assert notices(looks) == [AlertState.FIRING, AlertState.RESOLVED]
    assert states[2][0].state is AlertState.RESOLVED
    assert states[2][0].since == at(90)


def test_given_trouble_shorter_than_for_s_then_nothing_is_sent_at_all() -> None:
    looks = [(0, DOWN), (30, DOWN), (45, UP), (60, DOWN), (90, UP)]

    assert notices(looks) == []
    assert run(looks)[-1][0].state is AlertState.OK


def test_given_many_failing_runs_between_evaluations_then_still_one_notice() -> None:
    rule = Rule("failing", AlertKind.CONSECUTIVE_FAILURES, threshold=3, for_s=0, notify=("ops",))
    failing = Seen("approvals_to_feishu", True, "its last 3 runs failed: oa 500")
    looks = [(t, failing) for t in range(0, 600, 30)]

    assert notices(looks, rule) == [AlertState.FIRING]


def test_given_a_second_outage_then_it_fires_under_a_new_epoch() -> None:
    looks = [(0, DOWN), (60, DOWN), (90, UP), (120, DOWN), (180, DOWN)]

    states = run(looks)

    assert notices(looks) == [AlertState.FIRING, AlertState.RESOLVED, AlertState.FIRING]
    assert states[-1][0].epoch == 2
    assert states[-1][0].since == at(120)


def test_given_a_firing_notice_not_delivered_then_it_is_still_owed_on_the_next_look() -> None:
    alert = decide(RULE, decide(RULE, None, DOWN, at(0)), DOWN, at(60))

    again = decide(RULE, alert, DOWN, at(90))

    assert due(alert) is due(again) is AlertState.FIRING
    assert again.epoch == alert.epoch


def test_given_it_resolved_before_its_firing_got_out_then_no_resolution_is_sent() -> None:
    firing = decide(RULE, decide(RULE, None, DOWN, at(0)), DOWN, at(60))

    resolved = decide(RULE, firing, UP, at(90))

    assert resolved.state is AlertState.RESOLVED
    assert due(resolved) is None


def test_given_a_notice_then_its_key_names_rule_subject_epoch_state_and_destination() -> None:
    firing = decide(RULE, decide(RULE, None, DOWN, at(0)), DOWN, at(60))

    notice = notice_of(RULE, firing, AlertState.FIRING)

    assert notice.key("ops") == "alert:oa_down:oa:1:firing:ops"
    assert notice.title == "[FIRING] oa_down: oa"
    assert "since 2026-12-07 09:00:00 UTC" in notice.text
    assert notice.next_step == next_step(AlertKind.VENDOR_DOWN, "oa")


def test_given_a_webhook_body_then_its_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"state": "firing"}'

    signature = sign("s3cret", "1765098000", body)

    expected = hmac.new(b"s3cret", b"1765098000." + body, hashlib.sha256).hexdigest()
    assert signature == f"sha256={expected}"
