"""What operators see of a running engine: Prometheus metrics, OpenTelemetry traces, JSON logs.

`metrics` holds every metric object (instrumentation points are one-liners), `temporal_metrics`
bridges the Temporal SDK's own metrics into the same registry, `tracing` makes one trace per turn
from the gateway through the workflow to the LLM activity, `logs` formats log lines (text or one
JSON object a line), and `options` turns the command-line flags into all of that.
"""
