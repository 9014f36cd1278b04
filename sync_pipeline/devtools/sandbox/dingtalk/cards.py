"""DingTalk interactive cards (`/v1.0/card/instances...`): create and deliver by
`outTrackId`, and update.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from sync_pipeline.devtools.sandbox.dingtalk.base import PLATFORM, DingTalkBase, invalid, missing

SPACE_MODELS = {  # openSpaceId space type -> the deliver model it needs
    "IM_GROUP": "imGroupOpenDeliverModel",
    "IM_ROBOT": "imRobotOpenDeliverModel",
    "IM_SINGLE": "imSingleOpenDeliverModel",
}


class Cards(DingTalkBase):
    """Interactive cards."""

    def _spaces(self, args: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(spaceType, spaceId) pairs of "dtv1.card//IM_GROUP.cid...;IM_ROBOT.userId"."""
        open_space = str(args.get("openSpaceId", ""))
        prefix = "dtv1.card//"
        if not open_space.startswith(prefix):
            raise invalid("openSpaceId must start with dtv1.card//")
        spaces = []
        for part in filter(None, open_space[len(prefix) :].split(";")):
            space_type, _, space_id = part.partition(".")
            if space_type not in SPACE_MODELS or not space_id:
                raise invalid(f"unsupported open space {part!r}")
            if not isinstance(args.get(SPACE_MODELS[space_type]), dict):
                raise invalid(f"{SPACE_MODELS[space_type]} is required for {space_type}")
            spaces.append((space_type, space_id))
        if not spaces:
            raise invalid("openSpaceId names no space")
        return spaces

    def _recipients(self, space_type: str, space_id: str) -> list[str] | None:
        if space_type == "IM_GROUP":
            chat = self.store.get(PLATFORM, "chat", space_id)
            return None if chat is None else list(chat["useridlist"])
        return [space_id] if self.store.get(PLATFORM, "user", space_id) is not None else None

    def create_and_deliver(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Create a card once per outTrackId and deliver it once per space.

        outTrackId is the caller's idempotency key. DingTalk does not document the answer to a
        repeat; the sandbox delivers nothing twice and answers with the first delivery's
        result, so a retry after a lost answer is harmless (DESIGN.md §3).
        """
        for name in ("cardTemplateId", "outTrackId", "cardData", "openSpaceId"):
            if args.get(name) in (None, ""):
                raise missing(name)
        spaces = self._spaces(args)
        track = str(args["outTrackId"])
        with self._write_lock:
            card = self.store.get(PLATFORM, "card", track) or {
                "outTrackId": track,
                "cardTemplateId": args["cardTemplateId"],
                "cardData": args["cardData"],
                "privateData": args.get("privateData") or {},
                "callbackType": args.get("callbackType", "STREAM"),
                "callbackRouteKey": args.get("callbackRouteKey", ""),
                "deliveries": {},
                "recipients": [],
            }
            results = []
            for space_type, space_id in spaces:
                key = f"{space_type}.{space_id}"
                if key not in card["deliveries"]:
                    recipients = self._recipients(space_type, space_id)
                    delivery: dict[str, Any] = {"spaceType": space_type, "spaceId": space_id}
                    if recipients is None:
                        delivery.update(success=False, errorMsg="space not found")
                    else:
                        delivery.update(success=True, carrierId=secrets.token_hex(16))
                        card["recipients"] = sorted({*card["recipients"], *recipients})
                        body = {**args, "spaceType": space_type, "spaceId": space_id}
                        self.store.record(
                            PLATFORM, "card/instances/createAndDeliver", app, body, idem_key=track
                        )
                    card["deliveries"][key] = delivery
                results.append(card["deliveries"][key])
            self.store.put(PLATFORM, "card", track, card)
        return {"success": True, "result": {"outTrackId": track, "deliverResults": results}}

    def update_card(self, app: str, args: dict[str, Any]) -> dict[str, Any]:
        """Update a card in place by outTrackId: public data, private data, or both."""
        if not args.get("outTrackId"):
            raise missing("outTrackId")
        options = args.get("cardUpdateOptions") or {}
        with self._write_lock:
            card = self.store.get(PLATFORM, "card", str(args["outTrackId"]))
            if card is None:
                raise invalid("outTrackId不存在")  # the not-found code is unconfirmed
            if isinstance(args.get("cardData"), dict):
                new = args["cardData"].get("cardParamMap") or {}
                if options.get("updateCardDataByKey"):
                    card["cardData"]["cardParamMap"] = {
                        **card["cardData"].get("cardParamMap", {}),
                        **new,
                    }
                else:
                    card["cardData"] = args["cardData"]
            for user, data in (args.get("privateData") or {}).items():
                old = card["privateData"].get(user, {}).get("cardParamMap", {})
                new = data.get("cardParamMap") or {}
                merged = {**old, **new} if options.get("updatePrivateDataByKey") else new
                card["privateData"][user] = {"cardParamMap": merged}
            self.store.put(PLATFORM, "card", card["outTrackId"], card)
            self.store.record(PLATFORM, "card/instances", app, args)
        return {"success": True, "result": True}
