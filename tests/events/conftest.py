"""Fixtures of the approval and card event tests (tests/events/approval_scene.py); a test
module that defines its own `sandbox` or `rt` (test_messages.py) uses its own."""

from tests.events.approval_scene import rt, sandbox, sandbox_dir, sandbox_store  # noqa: F401
