"""Replaying dead letters and failed events, once their cause is fixed.

A dead letter is a record the pipeline could not sync (an approver without an IM account, a
missing field) or an effect a vendor refused (a recipient it does not know). When the cause is
fixed at its source (the person is given an account, the form is completed), a replay sends the
letter through the flow again:

- the flow's directory is refreshed from both platforms first: most letters are people who
  could not be mapped;
- a record letter is re-read from its source where the connector can re-read one record (the
  source may have been corrected), else the record as it was stored is used; it then goes
  through the same stages and effect keys as a pull (`steps.sync_records` with `replay`), so
  what was made before is not made again and what failed is made now;
- a refused-effect letter is the planned write itself, made again under its own effect key;
- a message letter goes through its message flow again (each mention judged anew).

A letter is closed only when its replay saw no failure for its record; one that fails again
stays open, its `last_seen_at` and reason telling the operator why (a new reason opens a new
letter and closes the old one). Replays are counted per letter (`replay_count`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync_pipeline.config.flow import Flow
from sync_pipeline.connectors.base import ReadsOne
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.effects import REFUSED, make_effects
from sync_pipeline.pipeline.runtime import Runtime
from sync_pipeline.records import Record, WriteRequest
from sync_pipeline.state import deadletters, runs
from sync_pipeline.state.deadletters import DeadLetter

MESSAGES = "messages"  # the source stream of message flows


@dataclass(frozen=True)
class FlowReplay:
    """What replaying one flow's letters came to."""

    flow: str
    letters: int
    closed: int
    failing: int  # still open: the cause is not fixed
    skipped: int  # cannot be replayed (see `notes`)
    notes: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "letters": self.letters,
            "closed": self.closed,
            "failing": self.failing,
            "skipped": self.skipped,
            "notes": list(self.notes),
        }


def replay_dead_letters(
    rt: Runtime, flow: str | None = None, letter_ids: Iterable[int] | None = None
) -> list[FlowReplay]:
    """Replay the open letters (of one flow, or these ids), flow by flow."""
    with rt.engine.connect() as conn:
        letters = deadletters.open_letters(conn, flow, letter_ids=letter_ids)
    by_flow: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        by_flow.setdefault(letter.flow, []).append(letter)
    return [_replay_flow(rt, name, group) for name, group in sorted(by_flow.items())]


def _replay_flow(rt: Runtime, name: str, letters: Sequence[DeadLetter]) -> FlowReplay:
    if name not in rt.config.flows:
        note = f"flow {name} is no longer configured"
        return FlowReplay(name, len(letters), 0, 0, len(letters), (note,))
    flow = rt.flow(name)
    steps.load_directory(rt, flow, refresh=True)
    started = steps.read_clock(rt)
    with rt.engine.begin() as conn:
        deadletters.mark_replayed(conn, [letter.id for letter in letters])
    records, requests, skipped = _sorted_out(rt, flow, letters)
    for record in records.values():
        _sync(rt, flow, record, started)
    if requests:
        _remake(rt, flow, list(requests.values()))
    replayed = [letter for letter in letters if letter.id not in skipped]
    with rt.engine.begin() as conn:
        failing = deadletters.failing_since(
            conn, flow.name, {letter.source_id for letter in replayed}, started
        )
        fixed = [letter.id for letter in replayed if letter.source_id not in failing]
        closed = deadletters.close(conn, fixed)
    return FlowReplay(
        flow.name,
        len(letters),
        closed,
        len(replayed) - len(fixed),
        len(skipped),
        tuple(sorted(set(skipped.values()))),
    )


def _sorted_out(
    rt: Runtime, flow: Flow, letters: Sequence[DeadLetter]
) -> tuple[dict[str, Record], dict[str, Mapping[str, Any]], dict[int, str]]:
    """(records to sync by source id, writes to make again by effect key, letters that
    cannot be replayed with why)."""
    records: dict[str, Record] = {}
    requests: dict[str, Mapping[str, Any]] = {}
    skipped: dict[int, str] = {}
    source = rt.connector(flow.source.connector)
    for letter in letters:
        if letter.error_class == REFUSED and "effect_key" in letter.record:
            requests[str(letter.record["effect_key"])] = letter.record
            continue
        if letter.source_id in records:
            continue
        if isinstance(source, ReadsOne) and flow.source.stream != MESSAGES:
            found = source.read_one(flow.source.stream, letter.source_id)
            if found is None:
                skipped[letter.id] = f"{letter.source_id} is gone from {flow.source.connector}"
                continue
            records[letter.source_id] = found
        elif {"source_id", "version", "cursor_value", "payload"} <= set(letter.record):
            records[letter.source_id] = Record.from_json(letter.record)
        else:
            skipped[letter.id] = f"letter {letter.id} holds no record to replay"
    return records, requests, skipped


def _sync(rt: Runtime, flow: Flow, record: Record, read_at: datetime) -> None:
    """A record of the flow synced again: a message through its message flow (each mention
    judged anew), anything else through the pipeline's stages."""
    if flow.source.stream == MESSAGES:
        from sync_pipeline.pipeline.events.messages import sync_message

        sync_message(rt, flow, record, read_at, replay=True)
    else:
        steps.sync_records(rt, flow.name, [record], read_at, replay=True)


def _remake(rt: Runtime, flow: Flow, requests: Sequence[Mapping[str, Any]]) -> None:
    """Writes a vendor refused, made again under their own keys, in a run of their own."""
    writes = [WriteRequest.from_json(r) for r in requests]
    with steps.event_run(rt, flow, runs.REPLAY) as run_id:
        made = make_effects(rt, flow, writes, run_id, patient=True)
        with rt.engine.begin() as conn:
            runs.add_counts(conn, run_id, written=made.written, dead_lettered=made.dead)
            runs.finish(conn, run_id, runs.RunStatus.SUCCEEDED)
