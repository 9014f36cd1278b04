"""The webhook service: vendors' callbacks in, verified, recorded once, enqueued by name.

app.py serves it (`syncctl webhooks serve`); verify.py holds the signature, decryption and
timestamp-window checks; one module per vendor (oa, wecom, dingtalk, feishu, agora) verifies and
decodes that vendor's deliveries into `InboundEvent`s; sweep.py re-sends what the broker missed;
stats.py reads the counts. Nothing here imports the sandbox, the workers or Celery.
"""
