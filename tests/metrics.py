"""The README's "Metrics" table and a `/metrics` answer, read into comparable values."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

README = Path(__file__).resolve().parents[1] / "README.md"
ROW = re.compile(r"^\| `(sync_[a-z_]+)` \| (counter|gauge) \| ([^|]*) \|")

Listed = dict[str, tuple[str, frozenset[str]]]  # name -> (type, labels)


def readme_metrics() -> Listed:
    """Every metric the README's "Metrics" table lists, with its type and labels."""
    text = README.read_text("utf-8")
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    found: Listed = {}
    for line in section.splitlines():
        row = ROW.match(line)
        if row:
            labels = frozenset(re.findall(r"`([a-z_]+)`", row.group(3)))
            found[row.group(1)] = (row.group(2), labels)
    return found


def exposed_metrics(text: str) -> Listed:
    """Every sample name in a Prometheus text answer, with its family's type and the labels
    its samples carry (`_created` samples left out: they are not ours to document)."""
    found: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            _, labels = found.setdefault(sample.name, (family.type, set()))
            labels.update(sample.labels)
    return {name: (kind, frozenset(labels)) for name, (kind, labels) in found.items()}
