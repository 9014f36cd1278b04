"""Orchestration: everything that decides what happens, in what order, and what it leaves in
PostgreSQL. Runs (start, pull, commit), the sync of a page of records (plan and write), the
effects every remote write goes through, inbound events, the user directory, dead-letter
replay, alerts and the per-process runtime.

`workers/` (Celery tasks) and the CLI call into it; nothing below it (connectors, state,
stages, http, config, records) imports it, and the webhook service only records and enqueues.
"""
