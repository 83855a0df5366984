"""Prometheus metrics of the coding server (`GET /metrics`).

Each server owns its registry (no process-global state), so tests and several apps in one process
do not share counters. Labels are bounded sets: endpoints are route templates (unknown paths are one
label), chapters come from the code set, error kinds from the server's own list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServerMetrics:
    """The counters, gauges and histograms that the server updates."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "thce_requests", "HTTP requests by endpoint and status code.", ["endpoint", "status"], registry=r
        )
        self.latency = Histogram(
            "thce_request_duration_seconds",
            "Time from request to response, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "thce_batch_size", "Texts per batched prediction call.", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_duration = Histogram(
            "thce_batch_duration_seconds",
            "Time of one batched prediction call.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.texts = Counter("thce_texts", "Texts coded.", registry=r)
        self.codes = Counter(
            "thce_codes_emitted",
            "Codes in answers, by ICD-10-CM chapter (or code system).",
            ["chapter"],
            registry=r,
        )
        self.errors = Counter("thce_errors", "Error responses by kind.", ["kind"], registry=r)
        self.queue_depth = Gauge("thce_queue_depth", "Texts waiting for a batch.", registry=r)
        self.in_flight = Gauge("thce_requests_in_flight", "Requests being answered now.", registry=r)

    def observe_batch(self, size: int, seconds: float) -> None:
        """One batched prediction call finished."""
        self.batch_size.observe(size)
        self.batch_duration.observe(seconds)
        self.texts.inc(size)

    def observe_codes(self, results: Iterable[Mapping[str, Any]]) -> None:
        """Count every code of every answer under its chapter."""
        for result in results:
            for code in result.get("codes", ()):
                self.codes.labels(chapter_label(code.get("system", ""), code.get("code", ""))).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def chapter_label(system: str, code: str) -> str:
    """`ICD10:<chapter number>` for an ICD-10-CM code (its own or its category's chapter), the system
    name for CPT/HCPCS (no chapters), `unknown` otherwise."""
    if system != "ICD10":
        return system if system in ("CPT", "HCPCS") else "unknown"
    from thce.utils.code_validator import icd10_chapter

    found = icd10_chapter(code)
    return f"ICD10:{found}" if found is not None else "unknown"
