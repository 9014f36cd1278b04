"""sync_pipeline: keeps an enterprise IM platform and its OA system in step."""

__version__ = "0.1.0"
