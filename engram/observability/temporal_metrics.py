"""The Temporal SDK's own metrics (`temporal_*`: requests, polls, task latencies, slots), served
on Engram's `/metrics` beside Engram's.

The SDK's core records into a `MetricBuffer` instead of serving an endpoint of its own; this
collector drains the buffer (on every scrape, and every few seconds so it never fills) and keeps
running totals: counters add up their deltas, gauges keep their last value, histograms count
into buckets. One port, one scrape job, whatever the process runs.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

# Updates held between drains; past it the core drops updates (and logs it).
BUFFER_SIZE = 100_000
DRAIN_EVERY_SECONDS = 5.0
# The core's histograms are durations, reported here in seconds.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

Labels = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total: float = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.buckets[i] += 1


@dataclass
class _Family:
    kind: int
    description: str
    counters: dict[Labels, float] = field(default_factory=dict)
    histograms: dict[Labels, _Histogram] = field(default_factory=dict)


class TemporalMetrics(Collector):
    """A Prometheus collector fed by a Temporal runtime's metric buffer."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self._buffer = buffer
        self._families: dict[str, _Family] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._drainer = threading.Thread(target=self._drain_often, daemon=True)

    def start(self) -> None:
        self._drainer.start()

    def close(self) -> None:
        self._stop.set()

    def drain(self) -> None:
        with self._lock:
            for update in self._buffer.retrieve_updates():
                metric = update.metric
                family = self._families.get(metric.name)
                if family is None:
                    family = self._families[metric.name] = _Family(
                        metric.kind, metric.description or f"Temporal SDK metric {metric.name}"
                    )
                labels = _labels(update.attributes)
                if family.kind == BUFFERED_METRIC_KIND_COUNTER:
                    family.counters[labels] = family.counters.get(labels, 0.0) + update.value
                elif family.kind == BUFFERED_METRIC_KIND_GAUGE:
                    family.counters[labels] = float(update.value)
                else:
                    family.histograms.setdefault(labels, _Histogram()).observe(update.value)

    def describe(self) -> Iterable[Metric]:
        # Nothing to declare up front: the names are whatever the SDK reports.
        return []

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self._lock:
            for name, family in sorted(self._families.items()):
                yield _exposed(name, family)

    def _drain_often(self) -> None:
        while not self._stop.wait(DRAIN_EVERY_SECONDS):
            self.drain()


def install(registry: CollectorRegistry = REGISTRY) -> TemporalMetrics:
    """Make the default Temporal runtime record into a buffer that `registry` serves. Call before
    any Temporal client connects: clients keep the runtime they were created on."""
    buffer = MetricBuffer(BUFFER_SIZE, MetricBufferDurationFormat.SECONDS)
    Runtime.set_default(
        Runtime(telemetry=TelemetryConfig(metrics=buffer)), error_if_already_set=False
    )
    collector = TemporalMetrics(buffer)
    registry.register(collector)
    collector.start()
    return collector


def _labels(attributes: Mapping[str, object]) -> Labels:
    return tuple(sorted((re.sub(r"[^a-zA-Z0-9_]", "_", k), str(v)) for k, v in attributes.items()))


def _exposed(name: str, family: _Family) -> Metric:
    if family.kind == BUFFERED_METRIC_KIND_COUNTER:
        base = name.removesuffix("_total")
        metric = Metric(base, family.description, "counter")
        for labels, value in family.counters.items():
            metric.add_sample(f"{base}_total", dict(labels), value)
    elif family.kind == BUFFERED_METRIC_KIND_GAUGE:
        metric = Metric(name, family.description, "gauge")
        for labels, value in family.counters.items():
            metric.add_sample(name, dict(labels), value)
    else:
        metric = Metric(name, family.description, "histogram")
        for labels, histogram in family.histograms.items():
            for bound, count in zip(BUCKETS, histogram.buckets, strict=True):
                metric.add_sample(f"{name}_bucket", {**dict(labels), "le": str(bound)}, count)
            metric.add_sample(f"{name}_bucket", {**dict(labels), "le": "+Inf"}, histogram.count)
            metric.add_sample(f"{name}_count", dict(labels), histogram.count)
            metric.add_sample(f"{name}_sum", dict(labels), histogram.total)
    return metric
