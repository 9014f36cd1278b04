"""The metrics' names and labels are one list, which the README repeats; the workers' counters,
written to files per process, are merged by whoever serves /metrics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from sync_pipeline import metrics
from tests.metrics import exposed_metrics, readme_metrics

WRITE_IN_A_PROCESS = """
import sys
from pathlib import Path
from sync_pipeline import metrics
metrics.use_directory(Path(sys.argv[1]))
metrics.vendor_calls.labels("wecom", "message_send").inc(int(sys.argv[2]))
"""


def test_the_readme_lists_every_metric_with_its_type_and_labels() -> None:
    expected = {m.name: (m.kind.value, frozenset(m.labels)) for m in metrics.DOCUMENTED}

    assert readme_metrics() == expected


def test_every_metric_name_has_the_sync_prefix_once() -> None:
    names = [m.name for m in metrics.DOCUMENTED]

    assert all(name.startswith("sync_") for name in names)
    assert len(set(names)) == len(names)


def test_counters_written_by_two_processes_are_merged_from_their_directories(
    tmp_path: Path,
) -> None:
    root = metrics.metrics_root(tmp_path)
    for name, calls in (("worker-a-1", "2"), ("worker-b-2", "3")):
        subprocess.run(
            [sys.executable, "-c", WRITE_IN_A_PROCESS, str(root / name), calls], check=True
        )

    merged = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in metrics.FilesCollector(root).collect()
        for sample in family.samples
    }

    key = ("sync_vendor_calls_total", (("api", "message_send"), ("vendor", "wecom")))
    assert merged[key] == 5


def test_a_directory_is_emptied_when_its_process_starts_using_it(tmp_path: Path) -> None:
    directory = metrics.metrics_root(tmp_path) / "worker-a-1"
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WRITE_IN_A_PROCESS, str(directory), "4"], check=True)

    values = [
        s.value for f in metrics.FilesCollector(directory.parent).collect() for s in f.samples
    ]
    assert values == [4]


def test_exposed_metrics_reads_names_types_and_labels_of_a_prometheus_answer() -> None:
    text = (
        "# HELP sync_queue_depth Tasks\n# TYPE sync_queue_depth gauge\n"
        'sync_queue_depth{queue="pull"} 3.0\n'
    )

    assert exposed_metrics(text) == {"sync_queue_depth": ("gauge", frozenset({"queue"}))}
