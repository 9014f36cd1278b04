"""The parts of the admin API's OpenAPI 3.1 description that its routes share: the schemas of
what it answers and accepts, the path parameters, the bearer scheme. The operations
themselves are in the endpoints' docstrings (app.py); tests/admin checks the answers against
all of it with schemathesis."""

from __future__ import annotations

from typing import Any

from sync_pipeline import __version__
from sync_pipeline.admin.bodies import MAX_ID, MAX_NAME_CHARS, MAX_REASON_CHARS

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
NUMBER = {"type": "number"}
BOOLEAN = {"type": "boolean"}
OPT_STRING = {"type": ["string", "null"]}
OPT_NUMBER = {"type": ["number", "null"]}
OPT_INTEGER = {"type": ["integer", "null"]}
BY = {"type": "string", "minLength": 1, "maxLength": MAX_NAME_CHARS, "description": "Who asks."}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(name: str) -> dict[str, Any]:
    return {"oneOf": [_ref(name), {"type": "null"}]}


def _object(properties: dict[str, Any], *, closed: bool = False) -> dict[str, Any]:
    """Every property required in an answer; none in a body (closed: no other key)."""
    if closed:
        return {"type": "object", "properties": properties, "additionalProperties": False}
    return {"type": "object", "properties": properties, "required": sorted(properties)}


def _id_parameter(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
    }


RUN = _object(
    {
        "id": INTEGER,
        "trigger": STRING,
        "status": STRING,
        "started_at": STRING,
        "finished_at": OPT_STRING,
        "counts": {"type": "object", "additionalProperties": INTEGER},
        "cursor_before": OPT_STRING,
        "cursor_after": OPT_STRING,
        "error": OPT_STRING,
    }
)

RESYNC = _object(
    {
        "id": INTEGER,
        "flow": STRING,
        "status": {"type": "string", "enum": ["running", "succeeded", "failed", "stopped"]},
        "dry_run": BOOLEAN,
        "since": OPT_STRING,
        "until": STRING,
        "position": OPT_STRING,
        "fraction": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
        "requested_by": STRING,
        "started_at": STRING,
        "finished_at": OPT_STRING,
        "error": OPT_STRING,
        "counts": {"type": "object", "additionalProperties": INTEGER},
    }
)

FLOW_STATUS = _object(
    {
        "flow": STRING,
        "enabled": BOOLEAN,
        "pullable": BOOLEAN,
        "cursor": OPT_STRING,
        "lag_s": OPT_NUMBER,
        "last_ok_age_s": OPT_NUMBER,
        "dead_letters": INTEGER,
        "last_run": _nullable("Run"),
        "last_event": _nullable("Run"),
        "resync": {
            "oneOf": [
                {
                    "type": "object",
                    "required": ["id", "status", "fraction", "counts"],
                    "properties": {
                        "id": INTEGER,
                        "status": STRING,
                        "fraction": OPT_NUMBER,
                        "counts": {"type": "object"},
                    },
                },
                {"type": "null"},
            ],
            "description": "Its resync going on, and how far it has come.",
        },
        "paused": {
            "oneOf": [
                _object({"by": STRING, "reason": OPT_STRING, "at": STRING}),
                {"type": "null"},
            ]
        },
    }
)

WORK_REQUEST = _object(
    {
        "id": INTEGER,
        "kind": {"type": "string", "enum": ["run", "replay", "resync"]},
        "flow": OPT_STRING,
        "task": STRING,
        "task_id": STRING,
        "status": {"type": "string", "enum": ["requested", "started", "turned_away"]},
        "sends": INTEGER,
        "created_at": STRING,
        "started_at": OPT_STRING,
        "run": _nullable("Run"),
    }
)

SCHEMAS: dict[str, Any] = {
    "Error": _object({"error": STRING, "detail": STRING}),
    "Health": _object({"ok": BOOLEAN}),
    "Run": RUN,
    "Resync": RESYNC,
    "FlowStatus": FLOW_STATUS,
    "WorkRequest": WORK_REQUEST,
    "ResyncAsked": _object({"resync": _ref("Resync"), "request": _ref("WorkRequest")}),
    "Pause": _object({"flow": STRING, "paused": BOOLEAN, "changed": BOOLEAN, "by": STRING}),
    "Cursor": _object(
        {
            "flow": STRING,
            "cursor": OPT_STRING,
            "fence": INTEGER,
            "before": OPT_STRING,
            "run_id": OPT_INTEGER,
        }
    ),
    "DeadLetter": _object(
        {
            "id": INTEGER,
            "flow": STRING,
            "run_id": OPT_INTEGER,
            "source_id": STRING,
            "reason": STRING,
            "error_class": STRING,
            "created_at": STRING,
            "replay_count": INTEGER,
            "state": {"type": "string", "enum": ["open", "closed", "discarded"]},
            "resolved_at": OPT_STRING,
            "discarded_by": OPT_STRING,
            "discard_reason": OPT_STRING,
        }
    ),
    "Effect": _object(
        {
            "id": INTEGER,
            "key": STRING,
            "flow": STRING,
            "record": STRING,
            "target": STRING,
            "kind": STRING,
            "status": {"type": "string", "enum": ["unknown", "pending", "failed", "done"]},
            "age_s": NUMBER,
            "error": OPT_STRING,
        }
    ),
    "Settled": _object(
        {
            "effect_id": INTEGER,
            "verdict": {"type": "string", "enum": ["done", "retry"]},
            "letters": {"type": "array", "items": INTEGER},
            "request": _nullable("WorkRequest"),
        }
    ),
    "Alert": _object(
        {
            "rule": STRING,
            "subject": STRING,
            "state": {"type": "string", "enum": ["ok", "pending", "firing", "resolved"]},
            "since": STRING,
            "epoch": INTEGER,
            "detail": STRING,
            "notified_firing": BOOLEAN,
            "notified_resolved": BOOLEAN,
        }
    ),
    "Answered": _object({"route": STRING, "status": INTEGER, "count": INTEGER}),
    # -- bodies
    "RunBody": _object(
        {"even_if_disabled": {**BOOLEAN, "description": "Run a flow whose file disables it."}},
        closed=True,
    ),
    "ResyncBody": _object(
        {
            "since": {
                "type": ["string", "null"],
                "minLength": 1,
                "maxLength": 40,
                "description": "ISO 8601 date or moment (UTC unless it says); null: the start.",
            },
            "dry_run": BOOLEAN,
            "by": BY,
        },
        closed=True,
    ),
    "PauseBody": _object(
        {"reason": {"type": ["string", "null"], "maxLength": MAX_REASON_CHARS}, "by": BY},
        closed=True,
    ),
    "ResumeBody": _object({"by": BY}, closed=True),
    "CursorBody": {
        **_object(
            {
                "value": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "maxLength": 40,
                    "description": "ISO 8601 moment, or digits; null: read everything.",
                },
                "by": BY,
            },
            closed=True,
        ),
        "required": ["value"],
    },
    "ReplayBody": _object(
        {
            "flow": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
            "ids": {
                "type": ["array", "null"],
                "items": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                "minItems": 1,
                "maxItems": 1000,
            },
        },
        closed=True,
    ),
    "SettleBody": {
        **_object(
            {"verdict": {"type": "string", "enum": ["done", "retry"]}, "by": BY}, closed=True
        ),
        "required": ["verdict"],
    },
}

ERROR_CONTENT = {"application/json": {"schema": _ref("Error")}}

BASE_SCHEMA: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "sync_pipeline admin API",
        "version": __version__,
        "description": "What syncctl does for an operator, over HTTP (README, 'Admin API').",
    },
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": SCHEMAS,
        "parameters": {
            "Flow": {
                "name": "flow",
                "in": "path",
                "required": True,
                "description": "The flow's name (its file in flows/).",
                "schema": {"type": "string", "minLength": 1},
            },
            "RequestId": _id_parameter("request_id", "work request"),
            "ResyncId": _id_parameter("resync_id", "resync"),
            "EffectId": _id_parameter("effect_id", "effect"),
        },
        "responses": {
            "Unauthorized": {
                "description": "No bearer token, or not the admin token.",
                "content": ERROR_CONTENT,
            },
            "Refused": {
                "description": "Refused, and nothing done: `error` says why in a word.",
                "content": ERROR_CONTENT,
            },
            "Unavailable": {
                "description": "PostgreSQL or Redis did not answer; the cause is in the log.",
                "content": ERROR_CONTENT,
            },
        },
    },
}
