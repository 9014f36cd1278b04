"""Slack's view of the seeded `World`: one member per person (the same emails as every other
platform, which is how the directory matches them), and the app's bot user."""

from __future__ import annotations

from sync_pipeline.devtools.sandbox.slack.base import PLATFORM, SlackBase, slack_id
from sync_pipeline.devtools.sandbox.world import World


def member_id(seed: int, employee_no: str) -> str:
    return slack_id("U", seed, employee_no)


class Seeding(SlackBase):
    def seed(self, world: World, approvals: int, checkin_days: int) -> dict[str, int]:
        team = self.credentials()["team_id"]
        return {
            "users": self.store.put_many(
                PLATFORM,
                "user",
                (
                    (
                        member_id(world.seed, p.employee_no),
                        {
                            "id": member_id(world.seed, p.employee_no),
                            "team_id": team,
                            "name": p.email.split("@")[0],
                            "deleted": False,
                            "real_name": p.name,
                            "tz": "Asia/Shanghai",
                            "is_bot": False,
                            "is_app_user": False,
                            "profile": {
                                "real_name": p.name,
                                "display_name": p.name,
                                "email": p.email,
                                "phone": p.mobile,
                                "team": team,
                            },
                            "_email": p.email.lower(),
                            "_employee_no": p.employee_no,
                        },
                        p.index,
                        None,
                    )
                    for p in world.people
                ),
            )
        }
