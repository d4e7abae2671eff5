"""The observability flags of `engram dev | worker | gateway`, and starting what they ask for."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass

from engram.observability import content_logs, logs, temporal_metrics, tracing
from engram.observability.metrics import MetricsServer

log = logging.getLogger(__name__)

DEFAULT_METRICS_HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("observability")
    group.add_argument(
        "--metrics-port",
        type=int,
        default=int(env("ENGRAM_METRICS_PORT") or 0),
        help="serve Prometheus metrics (Engram's and the Temporal SDK's) on this port, at "
        "/metrics (ENGRAM_METRICS_PORT; default 0: off)",
    )
    group.add_argument(
        "--metrics-host",
        default=env("ENGRAM_METRICS_HOST", DEFAULT_METRICS_HOST),
        help="interface for the metrics port "
        f"(ENGRAM_METRICS_HOST; default {DEFAULT_METRICS_HOST})",
    )
    group.add_argument(
        "--otlp-endpoint",
        default=env("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
        help="send OpenTelemetry traces to this OTLP/gRPC collector, e.g. http://localhost:4317 "
        "(OTEL_EXPORTER_OTLP_ENDPOINT; default: no traces)",
    )
    group.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default=env("ENGRAM_LOG_FORMAT", "text"),
        help="text, or json: one JSON object a line (ENGRAM_LOG_FORMAT; default text)",
    )


def configure_logging(args: argparse.Namespace) -> None:
    """Every engine command logs in the chosen format; those without the flag read the variable."""
    logs.configure(getattr(args, "log_format", None) or os.environ.get("ENGRAM_LOG_FORMAT", "text"))
    if content_logs.encryption_configured():
        content_logs.keep_out()


@dataclass
class Telemetry:
    """What `start` started, for `close` to stop."""

    server: MetricsServer | None = None
    temporal: temporal_metrics.TemporalMetrics | None = None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.temporal is not None:
            self.temporal.close()
        tracing.shutdown()


def start(args: argparse.Namespace) -> Telemetry:
    """Serve metrics and export traces as `args` asks. Call before connecting to Temporal: the
    SDK's metrics and the tracing interceptors attach to clients as they are made."""
    telemetry = Telemetry()
    port = getattr(args, "metrics_port", 0)
    if port:
        telemetry.temporal = temporal_metrics.install()
        try:
            telemetry.server = MetricsServer(args.metrics_host, port)
        except OSError as err:
            raise SystemExit(f"cannot serve metrics on {args.metrics_host}:{port}: {err}") from None
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, telemetry.server.port)
    endpoint = getattr(args, "otlp_endpoint", "")
    if endpoint:
        tracing.configure(endpoint, service=f"engram-{args.command}")
        log.info("traces to %s", endpoint)
    return telemetry
