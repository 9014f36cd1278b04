"""The admin HTTP API (`syncctl admin serve`): what `syncctl` does for an operator, over HTTP.

It sits beside the webhook service, in the same layer: it records work requests and sends
tasks by name through `dispatch` (as `syncctl run` and `resync` do), and reads state through
`state/` and `status`; it never imports the pipeline or Celery (lint-imports checks it).
"""
