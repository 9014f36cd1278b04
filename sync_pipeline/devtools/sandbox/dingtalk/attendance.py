"""DingTalk attendance (old API, `/attendance/list`): punch results over at most 7 days."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sync_pipeline.devtools.sandbox.dingtalk.base import CHINA, PLATFORM, DingTalkBase, OapiError
from sync_pipeline.devtools.sandbox.world import DAY_MS

MAX_ATTENDANCE_SPAN_MS = 7 * DAY_MS


def china_datetime(text: Any, name: str) -> int:
    try:
        parsed = datetime.strptime(str(text), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError:
        raise OapiError(40035, f"{name} must be yyyy-MM-dd HH:mm:ss") from None
    return int(parsed.timestamp() * 1000)


class Attendance(DingTalkBase):
    """Attendance records."""

    def attendance_list(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Punches of up to 50 users whose work date is in [workDateFrom, workDateTo] (≤ 7 days).

        DingTalk's errcode for a span or list over its limit is unconfirmed; 40035 here.
        """
        start = china_datetime(args.get("workDateFrom"), "workDateFrom")
        end = china_datetime(args.get("workDateTo"), "workDateTo")
        if end < start or end - start > MAX_ATTENDANCE_SPAN_MS:
            raise OapiError(40035, "workDateFrom and workDateTo must be at most 7 days apart")
        users = args.get("userIdList")
        if not isinstance(users, list) or not 0 < len(users) <= 50:
            raise OapiError(40035, "userIdList must hold 1 to 50 userIds")
        offset = int(args.get("offset", 0) or 0)
        limit = int(args.get("limit", 50) or 50)
        if offset < 0 or not 0 < limit <= 50:
            raise OapiError(40035, "offset must be >= 0 and limit between 1 and 50")
        rows = self.store.list(
            PLATFORM,
            "attendance",
            time_field="created_ms",
            from_ms=start,
            to_ms=end + 1,
            one_of={"userId": [str(u) for u in users]},
            offset=offset,
            limit=limit + 1,
        )
        return {"recordresult": rows[:limit], "hasMore": len(rows) > limit}
