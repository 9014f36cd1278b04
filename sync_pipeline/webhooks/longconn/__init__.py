"""Events without a public URL: a connection the service opens to the vendor and keeps
(`syncctl events connect CONNECTOR`), for connectors with an `events:` section.

dingtalk.py speaks DingTalk's Stream mode, feishu.py Feishu's long connection (its frames:
pbbp2.py); keeper.py records what arrives exactly as the
webhook service does (the vendor module's decode, `inbound.record`, then `events.handle` by
name through dispatch.EventSender), acks after recording, reconnects with backoff, treats a
socket silent for longer than `silence_s` as dead, and keeps the connection's liveness in
PostgreSQL (state/connections.py) for the `event_connection` alert. Like the rest of
sync_pipeline.webhooks it never imports the pipeline, the workers or Celery.
"""
