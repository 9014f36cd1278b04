"""Benchmarks of the whole stack (sandbox, worker process, Redis, PostgreSQL).

Each reports its figures beside a baseline measured in the same run, so a noisy machine moves
both. `sync_pipeline.devtools.sandbox.bench` measures the sandbox alone.
"""
