"""The effect protocol as a state machine (issue 11): whatever crashes, redeliveries, lost answers
and concurrent attempts Hypothesis chooses, no key is made twice at the vendor, and once the
faults stop every key is done (made once) or parked unknown (made at most once).

`make_effects` runs for real against PostgreSQL; the vendor is a double with a ledger that
counts the effects it made per key. A crash stands for a SIGKILL: an exception that no handler
of the attempt catches (`Crash` is a BaseException), raised

- at a chosen commit of the attempt (its first is the claim: the claim never commits; a later
  one records an outcome: the vendor made it and nothing says so),
- by the vendor after it made the effect, before answering;

after which the next attempt starts on a fresh connection, as a redelivered task does. A lost
answer is the vendor making the effect and the HTTP layer raising OutcomeUnknown. Two attempts
interleave: the second runs in full while the first is inside its vendor call, before or after
the vendor made its effect. The vendor either drops a resend under its dedupe handle inside its
window (Feishu uuid, WeCom duplicate check, DingTalk outTrackId) or has no handle (Agora).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.registry import free_port_base, load_registry, port_for
from sync_pipeline.devtools.sandbox.server import build_emulators, describe, env_vars
from sync_pipeline.errors import EffectInFlight, OutcomeUnknown, Transient, VendorUnavailable
from sync_pipeline.pipeline import effects as protocol
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.records import (
    Notification,
    NotifyKind,
    WriteOp,
    WriteRequest,
    WriteResult,
    WriteStatus,
)
from sync_pipeline.settings import load_settings
from sync_pipeline.state import effects, runs
from sync_pipeline.state.migrate import migrate
from sync_pipeline.state.schema import dead_letters
from sync_pipeline.state.schema import effects as effects_table
from tests.conftest import ROOT

FLOW = "approvals_to_wecom"
KEYS = ("k1", "k2", "k3")
WINDOW_S = 3600.0  # the dedupe vendor's window
PAST_EVERY_WINDOW_S = int(WINDOW_S + protocol.IN_FLIGHT_S) + 60
SETTLE_ATTEMPTS = 6


class Crash(BaseException):
    """A SIGKILL: the attempt stops where it is; no `except Exception` of it runs."""


class Call(Enum):
    """What happens to one vendor call."""

    ANSWERED = "answered"  # made, and the answer arrives
    REFUSED = "refused"  # not made: the vendor is busy (a Transient error, nothing sent)
    LOST = "lost"  # made, and the answer lost (OutcomeUnknown)
    CRASH = "crash"  # made, and the worker killed before the answer was read


@dataclass
class Vendor:
    """The target connector's double: it makes effects, counted per key in its ledger."""

    dedupe: bool
    ledger: Counter[str] = field(default_factory=Counter)
    plan: list[Call] = field(default_factory=list)  # the next calls' fates, in order
    # An attempt to run in full during the next call, before or after the vendor makes it.
    meanwhile: tuple[str, Callable[[], None]] | None = None

    def dedupe_window_s(self, stream: str) -> float | None:
        return WINDOW_S if self.dedupe else None

    def write(self, stream: str, request: WriteRequest) -> WriteResult:
        fate = self.plan.pop(0) if self.plan else Call.ANSWERED
        if fate is Call.REFUSED:
            raise VendorUnavailable("double", "busy", "send")
        self._interleave("before")
        if not (self.dedupe and self.ledger[request.effect_key]):
            self.ledger[request.effect_key] += 1  # a resend under the handle is dropped
        self._interleave("after")
        if fate is Call.LOST:
            raise OutcomeUnknown("double", "connection_lost", "send")
        if fate is Call.CRASH:
            raise Crash
        return WriteResult(request.effect_key, WriteStatus.DONE, f"msg-{request.effect_key}")

    def _interleave(self, when: str) -> None:
        if self.meanwhile is not None and self.meanwhile[0] == when:
            _, other = self.meanwhile
            self.meanwhile = None
            other()


@dataclass(eq=False)  # hashable: SQLAlchemy keeps its listeners in a dict
class CommitCrash:
    """Kills an attempt at its n-th commit (SQLAlchemy's commit event fires before the
    COMMIT is sent, so that transaction never commits)."""

    at: int | None = None
    seen: int = 0

    def __call__(self, conn: Any) -> None:
        self.seen += 1
        if self.at is not None and self.seen == self.at:
            self.at = None
            raise Crash

    def arm(self, at: int | None) -> None:
        self.at, self.seen = at, 0


def offline_sandbox_env(tmp_path: Path) -> dict[str, str]:
    """SANDBOX_* variables the shipped config reads, from a store no server serves: the
    connectors are never called (the vendor is a double)."""
    store = SandboxStore(tmp_path / "sandbox.db")
    port_base = free_port_base()
    emulators = build_emulators(store, load_registry(), port_base)
    control = f"http://127.0.0.1:{port_for('control', port_base)}"
    return env_vars(describe(emulators, control, store.admin_token()))


@pytest.fixture
def rt(service_env: dict[str, str], tmp_path: Path) -> Iterator[Runtime]:
    migrate(service_env["DATABASE_URL"])
    env = {
        **service_env,
        **offline_sandbox_env(tmp_path),
        "SYNC_CONFIG_DIR": str(ROOT / "config"),
    }
    runtime = build_runtime(load_settings(env), env)
    yield runtime
    runtime.engine.dispose()


def test_no_key_is_made_twice_and_each_ends_done_or_parked(rt: Runtime) -> None:
    crash_at_commit = CommitCrash()
    sa.event.listen(rt.engine, "commit", crash_at_commit)
    flow = rt.flow(FLOW)
    requests = [
        WriteRequest(
            key, f"R{key}", WriteOp.CREATE, Notification(NotifyKind.MESSAGE, "u1", {"text": key})
        )
        for key in KEYS
    ]

    class EffectMachine(RuleBasedStateMachine):
        vendor: Vendor
        with_vendor: Runtime
        run_id: int

        @initialize(dedupe=st.booleans())
        def a_vendor(self, dedupe: bool) -> None:
            with rt.engine.begin() as conn:
                conn.execute(sa.delete(dead_letters))
                conn.execute(sa.delete(effects_table))
                self.run_id = runs.start_webhook(conn, FLOW)
            self.vendor = Vendor(dedupe)
            target = flow.target.connector
            self.with_vendor = dataclasses.replace(rt, _connectors={target: self.vendor})

        def attempt(self, patient: bool) -> None:
            """One task's try at the whole batch, ended as the task would end it."""
            with contextlib.suppress(Crash, Transient):  # killed, or to be retried: then
                # a redelivery follows
                protocol.make_effects(
                    self.with_vendor, flow, requests, self.run_id, patient=patient
                )

        @rule(
            plan=st.lists(st.sampled_from(Call), max_size=len(KEYS)),
            crash_at=st.none() | st.integers(min_value=1, max_value=2 * len(KEYS) + 1),
            patient=st.booleans(),
        )
        def an_attempt(self, plan: list[Call], crash_at: int | None, patient: bool) -> None:
            self.vendor.plan = list(plan)
            crash_at_commit.arm(crash_at)
            try:
                self.attempt(patient)
            finally:
                crash_at_commit.arm(None)
                self.vendor.plan = []

        @rule(
            when=st.sampled_from(["before", "after"]),
            first=st.sampled_from(Call),
            patient=st.booleans(),
            other_patient=st.booleans(),
        )
        def two_attempts_at_once(
            self, when: str, first: Call, patient: bool, other_patient: bool
        ) -> None:
            """A second attempt runs in full while the first is inside its vendor call."""
            self.vendor.plan = [first]
            self.vendor.meanwhile = (when, lambda: self.attempt(other_patient))
            try:
                self.attempt(patient)
            finally:
                self.vendor.plan, self.vendor.meanwhile = [], None

        @rule()
        def every_window_passes(self) -> None:
            """Time passes: in-flight windows end, and so does the vendor's dedupe window."""
            ago = sa.text(f"interval '{PAST_EVERY_WINDOW_S} seconds'")
            with rt.engine.begin() as conn:
                conn.execute(
                    effects_table.update().values(
                        created_at=effects_table.c.created_at - ago,
                        updated_at=effects_table.c.updated_at - ago,
                    )
                )

        @invariant()
        def no_key_made_twice(self) -> None:
            if hasattr(self, "vendor"):
                assert [k for k, n in self.vendor.ledger.items() if n > 1] == []

        def teardown(self) -> None:
            if not hasattr(self, "vendor"):
                return
            self.settle()
            with rt.engine.connect() as conn:
                found = effects.get(conn, list(KEYS))
            final = {key: found[key].status for key in KEYS}
            made = {key: self.vendor.ledger[key] for key in KEYS}
            for key in KEYS:
                status = final[key]
                assert status in (effects.EffectStatus.DONE, effects.EffectStatus.UNKNOWN), (
                    final,
                    made,
                )
                if status is effects.EffectStatus.DONE:
                    assert made[key] == 1, (final, made)
                else:
                    assert made[key] <= 1, (final, made)

        def settle(self) -> None:
            """The faults stop: redeliveries run until no attempt waits on another's."""
            for _ in range(SETTLE_ATTEMPTS):
                try:
                    protocol.make_effects(self.with_vendor, flow, requests, self.run_id)
                except EffectInFlight:
                    self.every_window_passes()
                    continue
                return
            raise AssertionError(f"not settled after {SETTLE_ATTEMPTS} clean attempts")

    try:
        run_state_machine_as_test(
            EffectMachine,
            settings=settings(max_examples=50, deadline=None, stateful_step_count=6),
        )
    finally:
        sa.event.remove(rt.engine, "commit", crash_at_commit)
