"""Prometheus metrics: what every metric is called and labelled, and the in-process counters.

Two kinds, one list (`DOCUMENTED`, which the README's "Metrics" section repeats word for word):

- counted where they happen, in the process that calls the vendor (http/client.py): vendor
  calls, vendor errors by the vendor's own code, rate-limit waits. Workers run several
  processes (Celery's prefork pool), so these use prometheus-client's multiprocess mode: each
  worker writes them to files under `<SYNC_DATA_DIR>/metrics/<role>-<host>-<pid>/`
  (`use_directory`, at the worker's start), and the webhook service's `/metrics` merges every
  such directory (`collect_files`);
- read at scrape time from where the truth is (webhooks/metrics.py): records per flow, run
  durations, cursor lag and effects by status from PostgreSQL, queue depth from Redis. They
  need no process to have seen anything, and agree with `syncctl status`.

This module sits in the lowest layer, beside logging: anyone may import it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from prometheus_client import Counter, values
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

PREFIX = "sync_"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Kind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"


@dataclass(frozen=True)
class MetricSpec:
    """One exposed metric: its name as exposed (counters with `_total`), kind and labels."""

    name: str
    kind: Kind
    labels: tuple[str, ...]
    help: str

    @property
    def family(self) -> str:
        """The name prometheus-client takes (a counter's without `_total`)."""
        return self.name.removesuffix("_total") if self.kind is Kind.COUNTER else self.name


def _spec(name: str, kind: Kind, labels: tuple[str, ...], help_text: str) -> MetricSpec:
    return MetricSpec(PREFIX + name, kind, labels, help_text)


RECORDS_PULLED = _spec(
    "records_pulled_total", Kind.COUNTER, ("flow",), "Records read from the source"
)
RECORDS_WRITTEN = _spec(
    "records_written_total", Kind.COUNTER, ("flow",), "Records written to the target"
)
RECORDS_SKIPPED = _spec(
    "records_skipped_total", Kind.COUNTER, ("flow",), "Records that needed no write"
)
RECORDS_DEAD = _spec(
    "records_dead_lettered_total", Kind.COUNTER, ("flow",), "Records put in the dead letters"
)
RUN_DURATION = _spec(
    "run_duration_seconds",
    Kind.GAUGE,
    ("flow", "status"),
    "How long the newest finished pull of the flow took",
)
CURSOR_LAG = _spec(
    "cursor_lag_seconds",
    Kind.GAUGE,
    ("flow",),
    "Age of the oldest change read and not yet synced (syncctl status's lag)",
)
QUEUE_DEPTH = _spec("queue_depth", Kind.GAUGE, ("queue",), "Tasks waiting in a Celery queue")
VENDOR_CALLS = _spec(
    "vendor_calls_total", Kind.COUNTER, ("vendor", "api"), "Requests sent to a vendor"
)
VENDOR_ERRORS = _spec(
    "vendor_errors_total",
    Kind.COUNTER,
    ("vendor", "api", "code"),
    "Vendor calls that failed, by the vendor's own error code",
)
RATE_LIMIT_WAITS = _spec(
    "rate_limit_waits_total",
    Kind.COUNTER,
    ("vendor", "api"),
    "Calls that waited for a rate-limit slot",
)
RATE_LIMIT_WAIT_SECONDS = _spec(
    "rate_limit_wait_seconds_total",
    Kind.COUNTER,
    ("vendor", "api"),
    "Seconds spent waiting for rate-limit slots",
)
QUOTA_USED = _spec(
    "quota_used",
    Kind.GAUGE,
    ("vendor", "app", "api", "period"),
    "Metered calls charged to a quota this period",
)
EFFECTS = _spec(
    "effects", Kind.GAUGE, ("flow", "status"), "Remote effects by status (unknown: parked)"
)
RESYNC_PROGRESS = _spec(
    "resync_records",
    Kind.GAUGE,
    ("flow", "status", "figure"),
    "The newest resync of the flow: records read, written, skipped, dead-lettered so far",
)
WEBHOOK_DELIVERIES = _spec(
    "webhook_deliveries_total",
    Kind.COUNTER,
    ("connector",),
    "Webhook deliveries accepted and recorded",
)
WEBHOOK_REFUSALS = _spec(
    "webhook_refusals_total",
    Kind.COUNTER,
    ("connector", "reason"),
    "Webhook deliveries refused (and duplicates), by reason",
)

DOCUMENTED: tuple[MetricSpec, ...] = (
    RECORDS_PULLED,
    RECORDS_WRITTEN,
    RECORDS_SKIPPED,
    RECORDS_DEAD,
    RUN_DURATION,
    CURSOR_LAG,
    QUEUE_DEPTH,
    VENDOR_CALLS,
    VENDOR_ERRORS,
    RATE_LIMIT_WAITS,
    RATE_LIMIT_WAIT_SECONDS,
    QUOTA_USED,
    EFFECTS,
    RESYNC_PROGRESS,
    WEBHOOK_DELIVERIES,
    WEBHOOK_REFUSALS,
)


def _counter(spec: MetricSpec) -> Counter:
    return Counter(spec.family, spec.help, spec.labels)


vendor_calls = _counter(VENDOR_CALLS)
vendor_errors = _counter(VENDOR_ERRORS)
rate_limit_waits = _counter(RATE_LIMIT_WAITS)
rate_limit_wait_seconds = _counter(RATE_LIMIT_WAIT_SECONDS)


# -- multiprocess mode ----------------------------------------------------------------------------
def metrics_root(data_dir: Path) -> Path:
    return data_dir / "metrics"


def process_directory(data_dir: Path, role: str) -> Path:
    """This process tree's directory: `<data_dir>/metrics/<role>-<host>-<pid>`."""
    return metrics_root(data_dir) / f"{role}-{socket.gethostname()}-{os.getpid()}"


def use_directory(directory: Path) -> None:
    """Record this process's (and its forked children's) counters in `directory`, emptied
    first. Call before any counter is touched (a worker: before its pool forks). Directories
    of the same host's gone processes are removed: their counters end with them, which
    Prometheus reads as a counter reset."""
    _remove_gone(directory.parent)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # read the variable now, not at import


def process_exited(pid: int) -> None:
    """A pool process ended: its live gauges go (counters stay, as they must)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _remove_gone(root: Path) -> None:
    host = socket.gethostname()
    for found in root.glob(f"*-{host}-*") if root.is_dir() else ():
        pid = found.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(found, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FilesCollector(Collector):
    """The counters every process under `root` wrote, merged (prometheus-client's
    MultiProcessCollector over several directories)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> list[Metric]:
        files = sorted(glob.glob(str(self.root / "*" / "*.db")))
        with contextlib.suppress(FileNotFoundError):  # a directory removed while we read
            merged = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
            return list(merged)
        return []
