"""Seeyon A8 (致远) emulator: a second OA, of a plainly REST/JSON style unlike e-cology's.

Written from Seeyon's public REST documentation (open.seeyoncloud.com/seeyonapi, the older
open.seeyon.com CTP book) and integrators' published clients; the contract, each endpoint with
its source and what is unconfirmed, is docs/sandbox/seeyon.md. Never from our connectors.

* Auth: `GET /seeyon/rest/token/{restusername}/{password}?loginName=` or `POST
  /seeyon/rest/token` hands out a token id; calls carry it in a `token` header or query
  parameter. A token bound to a member (loginName) acts as that member. A missing or stale
  token answers HTTP 401 `{"code": "1010", "message": ...}`.
* Affairs (事项) of a member: `affairs/{pending|done|sent}` (by memberId) and
  `affairs/{...}/code/{code}` (by 人员编码), paged by pageNo/pageSize in CTP's FlipInfo shape.
* One flow (协同, by summaryId): `flow/state/{id}` (a bare number), `flow/data/{id}` (form
  data), `coll/comments/all/{id}` (opinions, FlipInfo).
* bpm writes: `bpm/process/start`, `bpm/workitem/finish` (attitude 2 同意 / 3 不同意),
  `bpm/process/stop`, `bpm/process/repeal`; business answers `{"code": 0 | n, "message",
  "data"}` with HTTP 200.
* Org: `orgMembers/{accountId}`, `orgMembers/code/{code}`, `orgMember/{id}`,
  `orgDepartments/{accountId}`, `orgDepartment/{id}`: bare arrays / objects.

Sandbox-documented extensions: affair lists take `updateDateFrom`/`updateDateTo` (epoch ms;
From inclusive, To exclusive) and are ordered by (updateDate, id) ascending, which makes
modified-since paging stable; every change to a flow bumps the updateDate of all its affairs.
A rate limit of 100 calls/s per token (HTTP 429, `Retry-After: 1`, code "1429"), scaled by
setting `rate_limit_scale` (0 disables it). Setting `finish_as_workitem_owner=1` lets a token
bound to no member finish, stop or repeal a workitem as its owner (or the flow's sender).

Seeyon documents no outbound callback for flows (its workflow events are server-side Java
plugins), so this emulator sends none: a client polls. Only API writes go to the ledger; the
simulated members of `press` act inside the OA.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from sync_pipeline.devtools.sandbox.seeyon.auth import Auth
from sync_pipeline.devtools.sandbox.seeyon.base import ACCOUNT_ID, PLATFORM, REST, Call
from sync_pipeline.devtools.sandbox.seeyon.model import AFFAIR_LISTS, TEMPLATES
from sync_pipeline.devtools.sandbox.seeyon.org import Org
from sync_pipeline.devtools.sandbox.seeyon.seeding import (
    Seeding,
    department_id,
    member_id,
    summary_id,
)
from sync_pipeline.devtools.sandbox.seeyon.workflow import Workflow

__all__ = [
    "ACCOUNT_ID",
    "TEMPLATES",
    "SeeyonEmulator",
    "department_id",
    "member_id",
    "summary_id",
]


class SeeyonEmulator(Auth, Org, Workflow, Seeding):
    """Seeyon A8 as one emulator: its API families' mixins and the one route table."""

    platform = PLATFORM
    title = "Seeyon A8 (OA)"
    port_offset = 6

    def routes(self) -> list[BaseRoute]:
        calls: list[tuple[str, Callable[[Call], Response], str]] = [
            *(
                (f"/affairs/{kind}/code/{{code}}", self._affair_list(kind, True), "GET")
                for kind in AFFAIR_LISTS
            ),
            *((f"/affairs/{kind}", self._affair_list(kind, False), "GET") for kind in AFFAIR_LISTS),
            ("/flow/state/{flowId}", self._flow_state, "GET"),
            ("/flow/data/{flowId}", self._flow_data, "GET"),
            ("/coll/comments/{type}/{summaryId}", self._comments, "GET"),
            ("/bpm/process/start", self._start, "POST"),
            ("/bpm/workitem/finish", self._finish, "POST"),
            ("/bpm/process/stop", self._stop, "POST"),
            ("/bpm/process/repeal", self._repeal, "POST"),
            ("/orgMembers/code/{code}", self._members_by_code, "GET"),
            ("/orgMembers/{accountId}", self._members, "GET"),
            ("/orgMember/{id}", self._member, "GET"),
            ("/orgDepartments/{accountId}", self._departments, "GET"),
            ("/orgDepartment/{id}", self._department, "GET"),
        ]
        return [
            Route(f"{REST}/token", self._token_by_body, methods=["POST"]),
            Route(f"{REST}/token/{{user}}/{{password}}", self._token_by_path, methods=["GET"]),
            *(Route(REST + path, self.rest(fn), methods=[method]) for path, fn, method in calls),
        ]
