"""What the webhook service's `/metrics` serves, in Prometheus's text format.

The service is the one place that scrapes the whole deployment (sync_pipeline/metrics.py says
why): the counters the workers' processes wrote under `<SYNC_DATA_DIR>/metrics/`, merged, and
at scrape time what PostgreSQL and Redis hold now: records per flow (summed over its runs),
the newest pull's duration, the cursor lag (as `syncctl status` computes it), effects by
status, quota used this period, webhook deliveries and refusals, and each Celery queue's depth
(LLEN of its Redis list). A failing read leaves its metrics out of that scrape, in one log line.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime

import redis
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from sync_pipeline import metrics
from sync_pipeline.config.loader import Config
from sync_pipeline.dispatch import QUEUES
from sync_pipeline.metrics import Kind, MetricSpec
from sync_pipeline.state.schema import effects, quota_usage, resyncs, runs
from sync_pipeline.status import NOT_PULLS, flow_statuses
from sync_pipeline.webhooks.stats import webhook_stats

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def family(spec: MetricSpec) -> CounterMetricFamily | GaugeMetricFamily:
    if spec.kind is Kind.COUNTER:
        return CounterMetricFamily(spec.family, spec.help, labels=spec.labels)
    return GaugeMetricFamily(spec.family, spec.help, labels=spec.labels)


class StateCollector(Collector):
    """The deployment's figures, read from PostgreSQL and Redis at each scrape."""

    def __init__(self, engine: Engine, redis_client: redis.Redis, config: Config) -> None:
        self.engine, self.redis, self.config = engine, redis_client, config

    def collect(self) -> Iterator[Metric]:
        parts = (self._records, self._flows, self._effects, self._resyncs, self._webhooks)
        for part in (*parts, self._queues):
            try:
                yield from part()
            except (sa.exc.SQLAlchemyError, redis.exceptions.RedisError) as exc:
                log.warning("metrics: %s left out: %s", part.__name__, type(exc).__name__)

    def _records(self) -> list[Metric]:
        columns = {
            metrics.RECORDS_PULLED: runs.c.pulled,
            metrics.RECORDS_WRITTEN: runs.c.written,
            metrics.RECORDS_SKIPPED: runs.c.skipped,
            metrics.RECORDS_DEAD: runs.c.dead_lettered,
        }
        query = sa.select(runs.c.flow, *(sa.func.sum(c) for c in columns.values())).group_by(
            runs.c.flow
        )
        families = {spec: family(spec) for spec in columns}
        with self.engine.connect() as conn:
            for flow, *sums in conn.execute(query):
                for spec, total in zip(families, sums, strict=True):
                    families[spec].add_metric([flow], float(total or 0))
        return list(families.values())

    def _flows(self) -> list[Metric]:
        duration, lag = family(metrics.RUN_DURATION), family(metrics.CURSOR_LAG)
        rank = sa.func.row_number().over(
            partition_by=runs.c.flow, order_by=runs.c.finished_at.desc()
        )
        finished = (
            sa.select(
                runs.c.flow,
                runs.c.status,
                runs.c.started_at,
                runs.c.finished_at,
                rank.label("rank"),
            )
            .where(runs.c.finished_at.is_not(None), runs.c.trigger.not_in(NOT_PULLS))
            .subquery()
        )
        newest = sa.select(
            finished.c.flow, finished.c.status, finished.c.started_at, finished.c.finished_at
        ).where(finished.c.rank == 1)
        with self.engine.connect() as conn:
            for flow, status, started, finished in conn.execute(newest):
                took = (finished - started).total_seconds()
                duration.add_metric([flow, status], max(0.0, took))
        for found in flow_statuses(self.engine, self.config):
            if found.lag_s is not None:
                lag.add_metric([found.flow], found.lag_s)
        return [duration, lag]

    def _effects(self) -> list[Metric]:
        by_status, quota = family(metrics.EFFECTS), family(metrics.QUOTA_USED)
        period = datetime.now(UTC).strftime("%Y-%m")
        counted = sa.select(effects.c.flow, effects.c.status, sa.func.count()).group_by(
            effects.c.flow, effects.c.status
        )
        used = sa.select(
            quota_usage.c.vendor, quota_usage.c.app, quota_usage.c.api, quota_usage.c.used
        ).where(quota_usage.c.period == period)
        with self.engine.connect() as conn:
            for flow, status, count in conn.execute(counted):
                by_status.add_metric([flow, status], float(count))
            for vendor, app, api, calls in conn.execute(used):
                quota.add_metric([vendor, app, api, period], float(calls))
        return [by_status, quota]

    def _resyncs(self) -> list[Metric]:
        progress = family(metrics.RESYNC_PROGRESS)
        rank = sa.func.row_number().over(partition_by=resyncs.c.flow, order_by=resyncs.c.id.desc())
        figures = ("read", "written", "skipped", "dead_lettered")
        ranked = sa.select(
            resyncs.c.flow, resyncs.c.status, *(resyncs.c[f] for f in figures), rank.label("rank")
        ).subquery()
        newest = sa.select(ranked.c.flow, ranked.c.status, *(ranked.c[f] for f in figures)).where(
            ranked.c.rank == 1
        )
        with self.engine.connect() as conn:
            for flow, status, *counts in conn.execute(newest):
                for figure, count in zip(figures, counts, strict=True):
                    progress.add_metric([flow, status, figure], float(count))
        return [progress]

    def _webhooks(self) -> list[Metric]:
        deliveries = family(metrics.WEBHOOK_DELIVERIES)
        refusals = family(metrics.WEBHOOK_REFUSALS)
        with self.engine.connect() as conn:
            found = webhook_stats(conn)
        for stats in found:
            deliveries.add_metric([stats.connector], float(stats.accepted))
            if stats.duplicates:
                refusals.add_metric([stats.connector, "duplicate"], float(stats.duplicates))
            for reason, count in sorted(stats.refused.items()):
                refusals.add_metric([stats.connector, reason], float(count))
        return [deliveries, refusals]

    def _queues(self) -> list[Metric]:
        depth = family(metrics.QUEUE_DEPTH)
        with self.redis.pipeline(transaction=False) as pipe:
            for queue in QUEUES:
                pipe.llen(queue)
            lengths = pipe.execute()
        for queue, length in zip(QUEUES, lengths, strict=True):
            depth.add_metric([queue], float(length))
        return [depth]


def exposition(state: StateCollector, files: metrics.FilesCollector) -> bytes:
    """Every metric, in Prometheus's text format."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(files)
    registry.register(state)
    return generate_latest(registry)
