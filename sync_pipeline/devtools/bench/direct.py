"""The baseline receiver of `syncctl bench events`: the least that works, in the request.

Check the OA webhook's signature, re-read the approval, map it with the flow's own pure stages
and send the message, all before answering: no queue, no PostgreSQL, no effect keys, no
retry. It is what a hand-written integration does, and what the pipeline's durability is
measured against. `GET /sent` tells the bench which WeCom message each approval became.

Run as `python -m sync_pipeline.devtools.bench.direct --port P` with the config and sandbox
variables in the environment (the bench does that).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
from pathlib import Path

import redis
import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sync_pipeline.config.loader import load_config
from sync_pipeline.connectors.base import ConnectorContext
from sync_pipeline.devtools.bench.harness import FLOW, RawLoop
from sync_pipeline.http import make_session
from sync_pipeline.records import WriteStatus
from sync_pipeline.webhooks.verify import oa_signature, same

APPROVALS = "approvals"


def create_app() -> Starlette:
    config = load_config(Path(os.environ.get("SYNC_CONFIG_DIR", "config")))
    flow = config.flows[FLOW]
    ctx = ConnectorContext(redis.Redis.from_url(os.environ["REDIS_URL"]), None, make_session())
    loop = RawLoop(config, flow, ctx)
    secret = os.environ["SANDBOX_OA_WEBHOOK_SECRET"]
    sent: dict[str, str] = {}
    lock = threading.Lock()

    def deliver(source_id: str) -> None:
        record = loop.source.read_one(APPROVALS, source_id)  # type: ignore[attr-defined]
        if record is None:
            return
        for request in loop.plan([record]):
            result = loop.target.write(flow.target.stream, request)
            if result.status is WriteStatus.DONE and result.target_id:
                with lock:
                    sent[source_id] = result.target_id

    async def receive(request: Request) -> Response:
        body = await request.body()
        timestamp = request.headers.get("x-oa-timestamp", "")
        expected = oa_signature(secret, timestamp, body)
        if not same(request.headers.get("x-oa-signature", "").lower(), expected):
            return JSONResponse({"error": "bad signature"}, status_code=401)
        source_id = str(json.loads(body)["requestId"])
        await run_in_threadpool(deliver, source_id)
        return JSONResponse({"received": True})

    async def listing(request: Request) -> Response:
        with lock:
            return JSONResponse(dict(sent))

    return Starlette(
        routes=[
            Route("/webhooks/sandbox_oa", receive, methods=["POST"]),
            Route("/sent", listing, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
