"""WeCom approvals (`/cgi-bin/oa/...`): getapprovalinfo's sp_no pages and
getapprovaldetail, built from the seeded world or the stored decisions.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.wecom.base import (
    PLATFORM,
    TEMPLATE_IDS,
    TEMPLATE_NAMES,
    WeComBase,
    WeComError,
    as_int,
    department_id,
    sp_no_for,
    userid_for,
)
from sync_pipeline.devtools.sandbox.world import Approval, World

MAX_WINDOW_S = 31 * 86400  # getapprovalinfo: span <= 31 days, else 301025

SP_STATUS = {"pending": 1, "approved": 2, "rejected": 3, "revoked": 4}
RECORD_TYPE = {"leave": 1}  # only system templates carry a record_type


class Approvals(WeComBase):
    """Approval lists and details."""

    def getapprovalinfo(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """sp_no list of approvals applied in [starttime, endtime], ordered by apply time.

        Filters are applied to each page after it is cut, the way WeCom applies its visibility
        rules, so a filtered page can be short or empty while the cursor goes on: clients must
        loop until the cursor is empty (platform-apis.md §1.1). The sandbox's choice of how to
        produce short pages; the cursor itself is opaque, and the same cursor gives the same
        page.
        """
        start = as_int(args.get("starttime"), "starttime", 301025)
        end = as_int(args.get("endtime"), "endtime", 301025)
        if start <= 0 or end <= start:
            raise WeComError(301025, "endtime must be greater than starttime")
        if end - start > MAX_WINDOW_S:
            raise WeComError(301025, "starttime and endtime span more than 31 days")
        size = as_int(args.get("size", 100), "size", 301025)
        if not 0 < size <= 100:
            raise WeComError(301025, "size must be between 1 and 100")
        legacy = "new_cursor" not in args and "cursor" in args
        if legacy:
            offset = as_int(args.get("cursor"), "cursor", 301025)
        else:
            offset = self._offset(args.get("new_cursor", ""), 301025)
        matches = self._approval_filter(args.get("filters", args.get("filter")) or [])
        rows = self.store.list(
            PLATFORM,
            "approval",
            time_field="created_ms",
            from_ms=start * 1000,
            to_ms=(end + 1) * 1000,
            offset=offset,
            limit=size + 1,
        )
        page, more = rows[:size], len(rows) > size
        sp_nos = [row["sp_no"] for row in page if matches(row)]
        if legacy:
            return {"sp_no_list": sp_nos, "next_cursor": offset + size if more else 0}
        return {
            "sp_no_list": sp_nos,
            "new_next_cursor": self._cursor(offset + size) if more else "",
        }

    @staticmethod
    def _approval_filter(filters: Any) -> Callable[[Mapping[str, Any]], bool]:
        """Same-key filters OR, different keys AND; only `department` may repeat."""
        wanted: dict[str, set[str]] = {}
        if not isinstance(filters, list):
            raise WeComError(301025, "filters must be a list")
        for item in filters:
            key, value = str(item.get("key", "")), str(item.get("value", ""))
            if key not in ("template_id", "creator", "department", "sp_status", "record_type"):
                raise WeComError(301025, f"invalid filter key {key}")
            if key in wanted and key != "department":
                raise WeComError(301025, f"filter key {key} may appear once")
            wanted.setdefault(key, set()).add(value)

        def matches(row: Mapping[str, Any]) -> bool:
            return all(str(row.get(key, "")) in values for key, values in wanted.items())

        return matches

    def getapprovaldetail(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        sp_no = str(args.get("sp_no", ""))
        if not sp_no:
            raise WeComError(301025, "sp_no missing")
        row = self.store.get(PLATFORM, "approval", sp_no)
        if row is None:
            raise WeComError(301025, f"sp_no {sp_no} not found")
        return {"info": self._info(row)}

    def _info(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """An approval's `info`: stored once written, else built from the seeded world.

        Seeded approvals are stored as their filter fields and world number only, so that
        100,000 of them seed in seconds; the world is deterministic, so the same number always
        gives the same approval.
        """
        if "info" in row:
            return dict(row["info"])
        world, userids = self._world()
        return approval_info(world.approval(int(row["_n"])), world, userids)

    def _world(self) -> tuple[World, dict[str, str]]:
        saved = self.store.setting(PLATFORM, "world") or "[]"
        with self._cache_lock:
            if self._world_cache is None or self._world_cache[0] != saved:
                seed, people = json.loads(saved)
                world = World(seed, people_count=people)
                userids = {p.employee_no: userid_for(p) for p in world.people}
                self._world_cache = (saved, world, userids)
            return self._world_cache[1], self._world_cache[2]


def approval_stub(
    approval: Approval, world: World, userids: Mapping[str, str]
) -> tuple[str, dict[str, Any], int, int]:
    """What getapprovalinfo filters on, and the world number that `approval_info` expands."""
    applicant = world.person(approval.applicant_no)
    sp_no = sp_no_for(approval)
    body: dict[str, Any] = {
        "sp_no": sp_no,
        "template_id": TEMPLATE_IDS[approval.template],
        "creator": userids[approval.applicant_no],
        "department": str(department_id(applicant.department_id)),
        "sp_status": SP_STATUS[approval.state],
        "_n": approval.number,
    }
    if approval.template in RECORD_TYPE:
        body["record_type"] = RECORD_TYPE[approval.template]
    return sp_no, body, approval.created_ms, approval.updated_ms


def approval_info(approval: Approval, world: World, userids: Mapping[str, str]) -> dict[str, Any]:
    """One world approval as getapprovaldetail's `info`."""
    applicant = world.person(approval.applicant_no)
    decided = {
        step.approver_no: step for step in approval.history if step.action in ("approve", "reject")
    }
    records = []
    for approver in approval.approver_nos:
        step = decided.get(approver)
        status = {"approve": 2, "reject": 3}[step.action] if step else 1
        records.append(
            {
                "sp_status": status,
                "approverattr": 1,
                "details": [
                    {
                        "approver": {"userid": userids[approver]},
                        "speech": step.comment if step else "",
                        "sp_status": status,
                        "sptime": step.at_ms // 1000 if step else 0,
                        "media_id": [],
                    }
                ],
            }
        )
    comments = [
        {
            "commentUserInfo": {"userid": userids[s.approver_no]},
            "commenttime": s.at_ms // 1000,
            "commentcontent": s.comment,
            "commentid": str(approval.number * 100 + i),
            "media_id": [],
        }
        for i, s in enumerate(approval.history)
        if s.action in ("comment", "revoke") and s.comment
    ]
    return {
        "sp_no": sp_no_for(approval),
        "sp_name": TEMPLATE_NAMES[approval.template],
        "sp_status": SP_STATUS[approval.state],
        "template_id": TEMPLATE_IDS[approval.template],
        "apply_time": approval.created_ms // 1000,
        "applyer": {
            "userid": userids[approval.applicant_no],
            "partyid": str(department_id(applicant.department_id)),
        },
        "sp_record": records,
        "notifyer": [],
        "apply_data": {"contents": apply_contents(approval)},
        "comments": comments,
    }


def apply_contents(approval: Approval) -> list[dict[str, Any]]:
    """apply_data.contents with WeCom's control names for the world's three templates."""
    form = approval.form

    def control(kind: str, cid: str, title: str, value: dict[str, Any]) -> dict[str, Any]:
        return {
            "control": kind,
            "id": cid,
            "title": [{"text": title, "lang": "zh_CN"}],
            "value": value,
        }

    if approval.template == "leave":
        return [
            control(
                "Vacation",
                "vacation-1563793073898",
                "请假类型",
                {
                    "vacation": {
                        "selector": {
                            "type": "single",
                            "options": [
                                {
                                    "key": form["leave_type"],
                                    "value": [{"text": form["leave_type"], "lang": "zh_CN"}],
                                }
                            ],
                        },
                        "attendance": {
                            "date_range": {
                                "type": "halfday",
                                "new_begin": form["start_ms"] // 1000,
                                "new_end": form["end_ms"] // 1000,
                                "new_duration": int(form["days"] * 86400),
                            },
                            "type": 1,
                        },
                    }
                },
            ),
            control("Textarea", "item-1497581399901", "请假事由", {"text": form["reason"]}),
        ]
    if approval.template == "expense":
        return [
            control("Money", "item-1497581399902", "金额", {"new_money": f"{form['amount']:.2f}"}),
            control(
                "Selector",
                "item-1497581399903",
                "费用类型",
                {
                    "selector": {
                        "type": "single",
                        "options": [
                            {
                                "key": form["category"],
                                "value": [{"text": form["category"], "lang": "zh_CN"}],
                            }
                        ],
                    }
                },
            ),
            control("Textarea", "item-1497581399904", "事由", {"text": form["reason"]}),
        ]
    return [
        control("Text", "item-1497581399905", "主题", {"text": form["subject"]}),
        control("Textarea", "item-1497581399906", "详情", {"text": form["detail"]}),
    ]
