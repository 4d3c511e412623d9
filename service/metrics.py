"""Prometheus metrics of one app, in a registry of its own.

The names and labels are a contract with the Grafana dashboard (README, "Metrics"):
change them only together with it. Labels stay low-cardinality: ``route`` is the
route template, ``status`` the HTTP code, ``label`` one of the model's classes.
Each app has its own ``CollectorRegistry`` (tests build several apps in one
process); the process collector is registered in it too, so ``/metrics`` also
carries ``process_cpu_seconds_total``, ``process_resident_memory_bytes``...
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CONFIDENCE_BUCKETS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)


class Metrics:
    """The service's metrics, registered in ``self.registry``."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        self.requests = Counter(
            "ilcs_requests", "HTTP requests by route template and status", ["route", "status"], registry=r
        )
        self.request_duration = Histogram(
            "ilcs_request_duration_seconds", "Request latency, arrival to response", ["route"],
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_wait = Histogram(
            "ilcs_queue_wait_seconds",
            "Time an image waited in the queue for a batch",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_depth = Gauge("ilcs_queue_depth", "Images waiting in the queue", registry=r)
        self.queue_dropped = Counter(
            "ilcs_queue_dropped",
            "Images taken out of the queue before the model: cancelled (client left, request gave up) or expired",
            ["reason"],
            registry=r,
        )
        self.batch_failures = Counter(
            "ilcs_batch_failures", "Model calls that raised (each image of the batch answered 500)", registry=r
        )
        for reason in ("cancelled", "expired"):  # exported as 0 from the start
            self.queue_dropped.labels(reason=reason)
        self.in_flight = Gauge("ilcs_requests_in_flight", "HTTP requests being handled", registry=r)
        self.batch_size = Histogram("ilcs_batch_size", "Images per model call", buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram(
            "ilcs_inference_seconds", "Time of one batched model call", buckets=LATENCY_BUCKETS, registry=r
        )
        self.predictions = Counter("ilcs_predictions", "Predicted class of each image", ["label"], registry=r)
        self.confidence = Histogram(
            "ilcs_confidence", "Top-1 softmax score of each image", buckets=CONFIDENCE_BUCKETS, registry=r
        )
        self.low_confidence = Counter(
            "ilcs_low_confidence", "Images whose top-1 score is below the low-confidence threshold", registry=r
        )
        self.model_info = Gauge(
            "ilcs_model_info", "The served model (value 1)", ["name", "version", "sha256", "device"], registry=r
        )
        self.class_prior = Gauge(
            "ilcs_model_class_prior",
            "Share of each class in the served model's training data (the class-mix drift alert compares with it)",
            ["label"],
            registry=r,
        )

    def set_model(self, name: str, version: str, sha256: str, device: str) -> None:
        """Publish the served model as ``ilcs_model_info{...} 1``."""
        self.model_info.clear()
        self.model_info.labels(name=name, version=version, sha256=sha256, device=device).set(1)

    def declare_classes(self, labels: list[str], class_counts: dict[str, int] | None = None) -> None:
        """Export every class's prediction counter at 0 from the start, and its share of the training data.

        A counter series that appears only at its first increment loses that increment in
        Prometheus' ``increase()``: shift counts would come out low and unseen classes missing.
        ``class_counts`` (the card's ``training.class_counts``, when it has them) give the shares;
        without them each class counts equally, as in a stratified split of a balanced set such as NEU.
        """
        counts = class_counts or dict.fromkeys(labels, 1)
        total = sum(counts.get(label, 0) for label in labels) or 1
        self.class_prior.clear()
        for label in labels:
            self.predictions.labels(label=label)
            self.class_prior.labels(label=label).set(counts.get(label, 0) / total)

    def observe_prediction(self, label: str, confidence: float, threshold: float) -> None:
        self.predictions.labels(label=label).inc()
        self.confidence.observe(confidence)
        if confidence < threshold:
            self.low_confidence.inc()

    def requests_in_flight(self) -> int:
        """HTTP requests being handled right now (graceful shutdown waits for 0)."""
        return int(self.registry.get_sample_value("ilcs_requests_in_flight") or 0)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric of this app."""
        return generate_latest(self.registry)
