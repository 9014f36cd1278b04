"""A pull from a source stuck on one page stops with PagingLoop instead of reading the same
page forever, and stores no page whose token it had followed already (steps.pull)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from starlette.applications import Starlette

from sync_pipeline.devtools.sandbox.core import SandboxStore
from sync_pipeline.devtools.sandbox.oa import OAEmulator
from sync_pipeline.errors import PagingLoop
from sync_pipeline.pipeline import steps
from sync_pipeline.pipeline.runtime import Runtime, build_runtime
from sync_pipeline.processes import free_port
from sync_pipeline.settings import load_settings
from sync_pipeline.state import migrate, pages
from tests.conftest import ROOT
from tests.events.approval_scene import (  # noqa: F401 - the scene's sandbox fixtures
    WECOM_FLOW,
    sandbox,
    sandbox_dir,
    sandbox_store,
)
from tests.sandbox.conftest import serve_app  # noqa: F401 - serves the stuck OA
from tests.stuck import StuckOn

OA_LIST = "/api/workflow/paService/getAllWorkflowRequestList"
PAGE_SIZE = 3  # the scene's ten approvals make several pages


@pytest.fixture
def stuck_oa(
    serve_app: Callable[[Any, int], None],  # noqa: F811
    sandbox_store: SandboxStore,  # noqa: F811
) -> str:
    """The scene's OA (its store, so its credentials and tokens), stuck on its first list
    page; returns its base URL."""
    port = free_port()
    emulator = OAEmulator(sandbox_store, f"http://127.0.0.1:{port}")
    serve_app(StuckOn(OA_LIST, Starlette(routes=emulator.routes())), port)
    return emulator.base_url


@pytest.fixture
def rt(service_env: dict[str, str], sandbox, stuck_oa: str) -> Runtime:  # noqa: F811
    """A worker's runtime whose OA is the stuck one, its flow reading small pages."""
    migrate.migrate(service_env["DATABASE_URL"])
    env = {
        **service_env,
        **sandbox.env(),
        "SANDBOX_OA_BASE_URL": stuck_oa,
        "SYNC_CONFIG_DIR": str(ROOT / "config"),
    }
    runtime = build_runtime(load_settings(env), env)
    flow = replace(runtime.config.flows[WECOM_FLOW], page_size=PAGE_SIZE)
    flows = {**runtime.config.flows, WECOM_FLOW: flow}
    return replace(runtime, config=replace(runtime.config, flows=flows))


def test_given_a_source_stuck_on_one_page_the_pull_stops_with_a_paging_loop(rt: Runtime) -> None:
    run_id = steps.start_run(rt, WECOM_FLOW, "test")
    assert run_id is not None
    enqueued: list[int] = []

    with pytest.raises(PagingLoop) as caught:
        steps.pull(rt, run_id, enqueued.append)

    assert (caught.value.vendor, caught.value.stream) == ("oa", "approvals")
    with rt.engine.connect() as conn:
        stored = pages.page_ids(conn, run_id)
        kept = [pages.get(conn, page_id) for page_id in stored]
    # The stuck answer's rows give the connector at most PAGE_SIZE positions to move to
    # after the first page: past them a token comes back, and that page is not kept.
    assert 0 < len(kept) <= 1 + PAGE_SIZE
    assert [page.seq for page in kept] == list(range(len(kept)))
    assert enqueued == stored
