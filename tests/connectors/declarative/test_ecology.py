"""The sandbox's e-cology OA through its declarative description (config/examples/declarative)
gives what the Python OA connector gives: the same records, hydrated the same, the same
directory. Both read the same emulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sync_pipeline.config.connector import Vendor
from sync_pipeline.connectors.base import (
    Connector,
    ConnectorContext,
    DecidesApprovals,
    Decision,
    ReadsOne,
)
from sync_pipeline.connectors.declarative.connector import DeclarativeConnector
from sync_pipeline.connectors.oa import OAConnector
from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.emulator import Emulator
from sync_pipeline.devtools.sandbox.oa import OAEmulator, oa_user_id
from sync_pipeline.devtools.sandbox.world import World
from sync_pipeline.errors import VendorRejected
from sync_pipeline.records import ReadWindow
from tests.connectors.conftest import SEED, connector_config, seeded
from tests.connectors.test_conformance import _declarative_oa_config

EVERYTHING = ReadWindow("2025-01-01T00:00:00Z", "2027-01-01T00:00:00Z")


@pytest.fixture
def both(
    serve: Callable[[type[Emulator], SandboxStore], Emulator],
    store: SandboxStore,
    ctx: ConnectorContext,
) -> tuple[Connector, Connector]:
    emulator = seeded(serve, OAEmulator, store, 60)
    creds = emulator.credentials()
    names = ("appid", "secret", "spk", "ofs_syscode")
    python = OAConnector(
        connector_config(Vendor.OA, emulator, {k: creds[k] for k in names}, {"userid": "1"}), ctx
    )
    declarative = DeclarativeConnector(_declarative_oa_config(emulator.base_url, creds), ctx)
    return python, declarative


def test_the_declarative_oa_reads_and_hydrates_the_records_the_python_one_does(
    both: tuple[Connector, Connector],
) -> None:
    python, declarative = both

    ours = declarative.read_page("approvals", EVERYTHING, None, 100)
    theirs = python.read_page("approvals", EVERYTHING, None, 100)

    assert len(ours.records) == 60
    assert [r.source_id for r in ours.records] == [r.source_id for r in theirs.records]
    assert [r.cursor_value for r in ours.records] == [r.cursor_value for r in theirs.records]
    assert declarative.hydrate("approvals", ours.records[:20]) == [
        record.__class__(o.source_id, o.version, o.cursor_value, dict(t.payload))
        for o, t in zip(
            ours.records[:20], python.hydrate("approvals", theirs.records[:20]), strict=True
        )
        for record in [o]
    ]


def test_the_declarative_oa_lists_the_directory_the_python_one_does(
    both: tuple[Connector, Connector],
) -> None:
    python, declarative = both

    assert declarative.list_users() == python.list_users()


def test_the_declarative_oa_rereads_one_request_as_its_list_gives_it(
    both: tuple[Connector, Connector],
) -> None:
    python, declarative = both
    [first, *_] = declarative.read_page("approvals", EVERYTHING, None, 5).records

    assert isinstance(declarative, ReadsOne)
    again = declarative.read_one("approvals", first.source_id)

    assert again == first  # same version: an event's re-read is no change
    assert again.payload == python.read_one("approvals", first.source_id).payload  # type: ignore[attr-defined]
    assert declarative.read_one("approvals", "999999") is None


def test_the_declarative_oa_decides_a_pending_request_as_its_approver(
    both: tuple[Connector, Connector],
) -> None:
    python, declarative = both
    pending = next(
        a for a in World(SEED).approvals(60) if a.state == "pending" and a.current_approver_nos
    )
    approver = oa_user_id(pending.current_approver_nos[0])
    before = python.read_one("approvals", pending.request_id)  # type: ignore[attr-defined]

    assert isinstance(declarative, DecidesApprovals)
    declarative.decide("approvals", pending.request_id, Decision.APPROVE, approver, "fine")

    after = python.read_one("approvals", pending.request_id)  # type: ignore[attr-defined]
    assert after.version != before.version
    assert after.payload["last_operator"] == approver


def test_a_decision_by_someone_whose_turn_it_is_not_is_refused(
    both: tuple[Connector, Connector],
) -> None:
    _, declarative = both
    pending = next(
        a for a in World(SEED).approvals(60) if a.state == "pending" and a.current_approver_nos
    )

    with pytest.raises(VendorRejected):
        declarative.decide(  # type: ignore[attr-defined]
            "approvals", pending.request_id, Decision.REJECT, oa_user_id("E00099"), "no"
        )
