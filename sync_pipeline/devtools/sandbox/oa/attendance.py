"""Sandbox-documented monthly attendance reports (`/api/kq/monthReport/...`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.responses import Response

from sync_pipeline.devtools.sandbox.oa.base import OA_TZ, PLATFORM, Call, OABase, Refused, _success


class MonthlyAttendance(OABase):
    """Monthly attendance reports, one per (person, month)."""

    def _month_report_save(self, call: Call) -> Response:
        """Upsert reports, one per (person, month); a bad report rejects the whole batch."""
        reports = call.json_param("reports")
        if not isinstance(reports, list) or not reports:
            raise Refused("PARAM_ERROR", "reports must be a non-empty JSON array")
        rows: list[tuple[str, dict[str, Any], int | None, int | None]] = []
        for index, report in enumerate(reports):
            rows.append(self._month_report_row(index, report))
        self.store.put_many(PLATFORM, "kq_month", rows)
        for _, body, _, _ in rows:
            self.store.record(PLATFORM, call.path, call.user, body, None)
        return _success({"saved": len(rows)})

    def _month_report_row(
        self, index: int, report: Any
    ) -> tuple[str, dict[str, Any], int | None, int | None]:
        if not isinstance(report, dict):
            raise Refused("PARAM_ERROR", f"reports[{index}] must be an object")
        who = str(report.get("resourceId") or report.get("workcode") or "")
        resource = self._receiver(who) if who else None
        if resource is None:
            raise Refused("PARAM_ERROR", f"reports[{index}]: no OA user {who!r}")
        month = str(report.get("kqMonth", ""))
        try:
            datetime.strptime(month, "%Y-%m").replace(tzinfo=OA_TZ)
        except ValueError:
            raise Refused("PARAM_ERROR", f"reports[{index}].kqMonth must be yyyy-MM") from None
        body: dict[str, Any] = {"resourceId": resource, "kqMonth": month}
        for key in MONTH_FIELDS:
            value = report.get(key, 0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise Refused("PARAM_ERROR", f"reports[{index}].{key} must be a number >= 0")
            body[key] = value
        body["remark"] = str(report.get("remark", ""))
        return f"{resource}:{month}", body, None, None

    def _month_report_list(self, call: Call) -> Response:
        equals: dict[str, str] = {}
        if call.params.get("kqMonth"):
            equals["kqMonth"] = call.params["kqMonth"]
        who = call.params.get("resourceId") or call.params.get("workcode")
        if who:
            resource = self._receiver(who)
            if resource is None:
                raise Refused("PARAM_ERROR", f"no OA user {who!r}")
            equals["resourceId"] = resource
        return _success(self.store.list(PLATFORM, "kq_month", equals=equals))


MONTH_FIELDS = (
    "workDays",
    "attendDays",
    "lateTimes",
    "earlyTimes",
    "absentTimes",
    "leaveDays",
    "overtimeHours",
)
