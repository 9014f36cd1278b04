"""Feishu attendance (`/attendance/v1/user_tasks/query`): each user's daily punches."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from sync_pipeline.devtools.sandbox.feishu.base import (
    PLATFORM,
    FeishuBase,
    FeishuError,
    _Caller,
    _digits,
    _public,
    _ymd,
)
from sync_pipeline.devtools.sandbox.world import DAY_MS, Checkin, World

ATTENDANCE_GROUP_ID = "6737202939523236110"
ATTENDANCE_SHIFT_ID = "6753520403404030215"


def _day_ms(ymd: int) -> int:
    try:
        day = datetime.strptime(str(ymd), "%Y%m%d").replace(tzinfo=UTC)
    except ValueError:
        raise FeishuError(1220001, f"param error: invalid date {ymd}") from None
    return int(day.timestamp() * 1000)


class Attendance(FeishuBase):
    """Attendance user tasks."""

    async def _query_user_tasks(self, request: Request, caller: _Caller) -> dict[str, Any]:
        self._check_rate(caller.app_id, "attendance.user_task.query")
        employee_type = request.query_params.get("employee_type", "")
        if employee_type not in ("employee_id", "employee_no"):
            raise FeishuError(
                1220001, "param error: employee_type must be employee_id or employee_no"
            )
        body = await self._json(request)
        user_ids = body.get("user_ids")
        if not isinstance(user_ids, list) or not 1 <= len(user_ids) <= 50:
            raise FeishuError(1220001, "param error: user_ids must hold 1..50 ids")
        try:
            day_from, day_to = int(body["check_date_from"]), int(body["check_date_to"])
        except (KeyError, TypeError, ValueError):
            raise FeishuError(
                1220001, "param error: check_date_from/to are yyyyMMdd ints"
            ) from None
        # The maximum span of one query is (unconfirmed); the sandbox does not limit it.
        from_ms, to_ms = _day_ms(day_from), _day_ms(day_to) + DAY_MS
        field = "user_id" if employee_type == "employee_id" else "employee_no"
        users = self.store.list(PLATFORM, "user", one_of={field: [str(u) for u in user_ids]})
        by_feishu_id = {u["user_id"]: u for u in users}
        known = {str(u[field]) for u in users}
        tasks = self.store.list(
            PLATFORM,
            "user_task",
            time_field="created_ms",
            from_ms=from_ms,
            to_ms=to_ms,
            one_of={"user_id": list(by_feishu_id)},
        )
        results = []
        for t in tasks:
            shown = str(by_feishu_id[t["user_id"]][field])
            result = _public(t) | {"user_id": shown}
            result["records"] = [
                {
                    **r,
                    **{
                        k: {**r[k], "user_id": shown, "creator_id": shown}
                        for k in ("check_in_record", "check_out_record")
                        if k in r
                    },
                }
                for r in t["records"]
            ]
            results.append(result)
        return {
            "user_task_results": results,
            "invalid_user_ids": [str(u) for u in user_ids if str(u) not in known],
            "unauthorized_user_ids": [],
        }


def _user_tasks(
    world: World, checkins: Iterator[Checkin], ids: Mapping[str, Mapping[str, str]]
) -> Iterator[tuple[str, dict[str, Any], int, int]]:
    """One attendance result per person and work day, from the world's on/off punches."""
    pending: dict[tuple[str, int], Checkin] = {}
    for punch in checkins:
        key = (punch.employee_no, punch.day_ms)
        if punch.kind == "on":
            pending[key] = punch
            continue
        on = pending.pop(key)
        user_id = ids[punch.employee_no]["user_id"]
        day = _ymd(punch.day_ms)
        shift_in, shift_out = punch.day_ms // 1000 + 3600, punch.day_ms // 1000 + 10 * 3600
        record: dict[str, Any] = {
            "check_in_record_id": _digits(user_id, day, "in"),
            "check_in_record": _flow(user_id, day, "in", on.at_ms),
            "check_in_result": on.result,
            "check_in_result_supplement": "None",
            "check_in_shift_time": str(shift_in),
            "check_out_result": punch.result,
            "check_out_result_supplement": "None",
            "check_out_shift_time": str(shift_out),
            "task_shift_type": 0,
        }
        if punch.at_ms:
            record["check_out_record_id"] = _digits(user_id, day, "out")
            record["check_out_record"] = _flow(user_id, day, "out", punch.at_ms)
        body = {
            "result_id": _digits(user_id, day, "result"),
            "user_id": user_id,
            "employee_name": world.person(punch.employee_no).name,
            "day": day,
            "group_id": ATTENDANCE_GROUP_ID,
            "shift_id": ATTENDANCE_SHIFT_ID,
            "records": [record],
        }
        yield f"{user_id}/{day}", body, punch.day_ms, punch.day_ms


def _flow(user_id: str, day: int, kind: str, at_ms: int) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "creator_id": user_id,
        "location_name": "Sandbox office",
        "check_time": str(at_ms // 1000),
        "comment": "",
        "record_id": _digits(user_id, day, kind),
        "is_field": False,
        "is_wifi": False,
        "type": 7,
    }
