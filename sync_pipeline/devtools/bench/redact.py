"""`syncctl bench redact`: log redaction on hostile text, beside one plain pass over the same.

Every log line goes through `logging.redact`, and log lines carry outside text. A redaction
whose time grows faster than its input lets one long field stall a process: with Python's
backtracking `re`, a 40,000-character word took 19 s. Each input here is `size` characters of
what made patterns backtrack (long runs of URL-like, key=value-like and whitespace-free text),
with one secret planted at the end. Both sides are timed on the same text in the same run:

- redact: `logging.redact(text)`;
- baseline: one `re.search` of a character class nothing matches: Python's regex engine
  reading every character once and doing nothing else, the cheapest linear pass there is
  over text of any kind (str.translate, say, has a fast path for ASCII only).

The ratio redact / baseline is what to watch: a linear redaction keeps it flat as `size` grows
(compare `--size 100000` and `--size 1000000`); a quadratic one multiplies it by ten. The
planted secret must come out masked, or the bench fails rather than report a figure.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from rich.console import Console
from rich.table import Table

from sync_pipeline.devtools.bench.harness import BenchError, write_report
from sync_pipeline.logging import redact

SECRET = "planted-s3cret"  # noqa: S105 - the value the bench checks is masked
PLANTED = f" redis://user:{SECRET}@cache:6379/0 token={SECRET}"
NOTHING = re.compile(r"[^\x00-\U0010ffff]")  # reads every character, matches none


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def _no_whitespace(size: int) -> str:
    """Seeded printable ASCII without whitespace: URL and key=value fragments at random."""
    pieces = ["a", "L", ":", "/", "@", "=", "token", "://", "x:", "secret=", "%", "."]
    chosen = random.Random(7).choices(pieces, k=size)  # noqa: S311 - test data, not crypto
    return "".join(chosen)[:size]


INPUTS: Mapping[str, Callable[[int], str]] = {
    "url_like_word": lambda size: "x " + _repeat("L", size - 2),  # issue 9's 19 s at 40,000
    "url_heads_no_at": lambda size: _repeat("a://b:", size),
    "scheme_runs": lambda size: _repeat("a" * 1000 + "_", size),
    "key_value_no_value": lambda size: _repeat("token=", size),
    "keys_no_separator": lambda size: _repeat("access_token ", size),
    "no_whitespace": _no_whitespace,
    "non_ascii": lambda size: _repeat("é", size // 2) + _repeat("ü://x:", size - size // 2),
    "many_secrets": lambda size: _repeat("redis://:pw@h password=pw ", size),
}


class RedactBenchError(BenchError):
    """A planted secret that came out unmasked: a wrong redaction has no figure worth reading."""

    bench = "bench redact"

    def __str__(self) -> str:
        return f"{self.bench}: {'; '.join(self.problems)}"


def bench_redact(size: int, repeats: int, json_path: Path, console: Console) -> dict[str, Any]:
    """Time every input `repeats` times; write the JSON, print the table, return the report."""
    report: dict[str, Any] = {
        "bench": "redact",
        "command": f"syncctl bench redact --size {size} --runs {repeats}",
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "size": size,
        "baseline": "one re.search over the same text, matching nothing",
        "inputs": {},
    }
    for name, make in INPUTS.items():
        text = make(size) + PLANTED
        console.print(f"{name}: {len(text):,} characters, {repeats} run(s)")
        report["inputs"][name] = _measure(name, text, repeats, json_path)
    write_report(json_path, report)
    console.print(_table(report))
    console.print(f"wrote {json_path}")
    return report


def _measure(name: str, text: str, repeats: int, json_path: Path) -> dict[str, Any]:
    redact_s, baseline_s = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        redacted = redact(text)
        redact_s.append(time.perf_counter() - started)
        started = time.perf_counter()
        NOTHING.search(text)
        baseline_s.append(time.perf_counter() - started)
        if SECRET in redacted:
            raise RedactBenchError([f"{name}: the planted secret was not masked"], str(json_path))
    ratios = [r / b for r, b in zip(redact_s, baseline_s, strict=True) if b]
    return {
        "characters": len(text),
        "redact_s": _spread(redact_s),
        "baseline_s": _spread(baseline_s),
        "ratio": round(median(ratios), 2) if ratios else None,
        "redact_mchars_per_s": round(len(text) / median(redact_s) / 1e6, 1),
    }


def _spread(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(median(values), 6),
        "min": round(min(values), 6),
        "max": round(max(values), 6),
    }


def _table(report: Mapping[str, Any]) -> Table:
    table = Table(
        title=f"bench redact: {report['size']:,} characters per input, medians (min-max)",
        caption=f"baseline: {report['baseline']}",
    )
    table.add_column("input")
    table.add_column("redact (ms)", justify="right")
    table.add_column("baseline (ms)", justify="right")
    table.add_column("redact / baseline", justify="right")
    table.add_column("redact (M chars/s)", justify="right")
    for name, found in report["inputs"].items():
        cells = [
            f"{found[side]['median'] * 1000:.1f} "
            f"({found[side]['min'] * 1000:.1f}-{found[side]['max'] * 1000:.1f})"
            for side in ("redact_s", "baseline_s")
        ]
        ratio = "-" if found["ratio"] is None else f"{found['ratio']:.1f}"
        table.add_row(name, *cells, ratio, f"{found['redact_mchars_per_s']:.1f}")
    return table
