"""WeCom checkin (打卡, `/cgi-bin/checkin/...`): punches and per-day summaries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sync_pipeline.devtools.sandbox.wecom.base import (
    CST_MS,
    PLATFORM,
    WeComBase,
    WeComError,
    as_int,
)
from sync_pipeline.devtools.sandbox.world import DAY_MS

MAX_CHECKIN_SPAN_S = 30 * 86400  # getcheckindata: span <= 30 days, else 301024


class Checkins(WeComBase):
    """Checkin records and day summaries."""

    def _checkin_users(self, args: Mapping[str, Any]) -> list[str]:
        userids = args.get("useridlist")
        if not isinstance(userids, list) or not 0 < len(userids) <= 100:
            raise WeComError(301023, "useridlist must hold 1 to 100 userids")
        userids = [str(u) for u in userids]
        known = {u["userid"] for u in self.store.list(PLATFORM, "user", one_of={"userid": userids})}
        if set(userids) - known:
            raise WeComError(301021, "invalid userid")
        return userids

    def _checkin_span(self, args: Mapping[str, Any]) -> tuple[int, int]:
        start = as_int(args.get("starttime"), "starttime", 301024)
        end = as_int(args.get("endtime"), "endtime", 301024)
        if start <= 0 or end <= start or end - start > MAX_CHECKIN_SPAN_S:
            raise WeComError(301024, "time span must be positive and at most 30 days")
        return start, end

    def getcheckindata(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        kind = as_int(args.get("opencheckindatatype", 3), "opencheckindatatype", 301039)
        if kind not in (1, 2, 3):
            raise WeComError(301039, "opencheckindatatype must be 1, 2 or 3")
        start, end = self._checkin_span(args)
        userids = self._checkin_users(args)
        if kind == 2:  # outings: the seeded company never goes out
            return {"checkindata": []}
        rows = self.store.list(
            PLATFORM,
            "checkin",
            time_field="created_ms",
            from_ms=start * 1000,
            to_ms=(end + 1) * 1000,
            one_of={"userid": userids},
        )
        return {"checkindata": [self._public(row) for row in rows]}

    def getcheckin_daydata(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """One summary per user per day between the two midnights (China time), inclusive."""
        start, end = self._checkin_span(args)
        userids = self._checkin_users(args)
        users = {
            u["userid"]: u for u in self.store.list(PLATFORM, "user", one_of={"userid": userids})
        }
        first_day = (start * 1000 + CST_MS) // DAY_MS * DAY_MS - CST_MS
        rows = self.store.list(
            PLATFORM,
            "checkin",
            time_field="created_ms",
            from_ms=first_day,
            to_ms=(end + 1) * 1000 + DAY_MS,
            one_of={"userid": userids},
        )
        by_day: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in rows:
            by_day.setdefault((row["userid"], row["_day"]), []).append(row)
        datas = []
        day = first_day
        while day <= end * 1000:
            for userid in userids:
                datas.append(self._day_summary(users[userid], day, by_day.get((userid, day), [])))
            day += DAY_MS
        return {"datas": datas}

    @staticmethod
    def _day_summary(
        user: Mapping[str, Any], day_ms: int, punches: list[dict[str, Any]]
    ) -> dict[str, Any]:
        day_s = day_ms // 1000
        weekday = datetime.fromtimestamp((day_ms + CST_MS) / 1000, UTC).weekday()
        done = [p for p in punches if p["exception_type"] != "未打卡"]
        times = sorted(p["checkin_time"] - day_s for p in done)
        exceptions = []
        for punch in punches:
            if punch["exception_type"] == "时间异常":
                late = punch["checkin_time"] - punch["sch_checkin_time"]
                exceptions.append({"exception": 1, "count": 1, "duration": late})
            elif punch["exception_type"] == "未打卡":
                exceptions.append({"exception": 3, "count": 1, "duration": 0})
        return {
            "base_info": {
                "date": day_s,
                "record_type": 1,
                "name": user["name"],
                "name_ex": user["name"],
                "departs_name": user["_department_name"],
                "acctid": user["userid"],
                "rule_info": {
                    "groupid": 1,
                    "groupname": "Office hours",
                    "scheduleid": 0,
                    "schedulename": "",
                    "checkintime": [{"work_sec": 9 * 3600, "off_work_sec": 18 * 3600}],
                },
                "day_type": 1 if weekday >= 5 else 0,  # Saturday, Sunday
            },
            "summary_info": {
                "checkin_count": len(done),
                "regular_work_sec": times[-1] - times[0] if len(times) > 1 else 0,
                "standard_work_sec": 9 * 3600 if weekday < 5 else 0,
                "earliest_time": times[0] if times else 0,
                "lastest_time": times[-1] if times else 0,  # sic: WeCom's spelling
            },
            "holiday_infos": [],
            "exception_infos": exceptions,
            "ot_info": {"ot_status": 0, "ot_duration": 0, "exception_duration": []},
            "sp_items": [],
        }
