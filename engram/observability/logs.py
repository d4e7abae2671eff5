"""Log lines: the usual text, or one JSON object a line for log pipelines (`--log-format json`).

A JSON line has `time` (UTC, RFC 3339), `level`, `logger` and `message`, then whatever is known of
the work it is about: `agent_id` and `message_id` (bound by the gateway while it serves a turn, and
by the LLM activity; any other activity's come from Temporal's activity info), `trace_id` when a
trace is being recorded, and `exception` with its traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

import temporalio.activity
import temporalio.workflow
from opentelemetry import trace

from engram import WORKFLOW_ID_PREFIX

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Fields a line may carry besides time, level, logger and message, in this order.
CONTEXT_FIELDS = ("agent_id", "message_id", "trace_id")

_context: ContextVar[Mapping[str, str] | None] = ContextVar("engram_log_context", default=None)


def bind(**fields: str) -> Token[Mapping[str, str] | None]:
    """Add fields to every line logged from here on in this task; `unbind` undoes it."""
    return _context.set({**(_context.get() or {}), **{k: v for k, v in fields.items() if v}})


def unbind(token: Token[Mapping[str, str] | None]) -> None:
    try:
        _context.reset(token)
    except ValueError:
        # An async generator closed from another task: that task never had these fields.
        pass


def context() -> Mapping[str, str]:
    """The fields known here: bound ones, else those of the activity or workflow running."""
    known = dict(_context.get() or {})
    info = _temporal_info()
    if info is not None:
        workflow_id, extra = info
        if workflow_id.startswith(WORKFLOW_ID_PREFIX):
            known.setdefault("agent_id", workflow_id.removeprefix(WORKFLOW_ID_PREFIX))
        known.update({k: v for k, v in extra.items() if k not in known})
    if "trace_id" not in known:
        trace_id = _trace_id()
        if trace_id:
            known["trace_id"] = trace_id
    return known


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _rfc3339(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = dict(context())
        # Temporal's loggers say which activity or workflow, even where its info is gone.
        for extra in ("temporal_activity", "temporal_workflow"):
            details = getattr(record, extra, None)
            if isinstance(details, Mapping):
                workflow_id = str(details.get("workflow_id") or "")
                if workflow_id.startswith(WORKFLOW_ID_PREFIX):
                    fields.setdefault("agent_id", workflow_id.removeprefix(WORKFLOW_ID_PREFIX))
        line.update((k, fields[k]) for k in CONTEXT_FIELDS if fields.get(k))
        line.update((k, v) for k, v in fields.items() if k not in CONTEXT_FIELDS)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure(log_format: str = "text", level: int = logging.INFO) -> None:
    """Log to stderr in `log_format` ("text" or "json")."""
    if log_format not in FORMATS:
        raise SystemExit(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        # The same details are fields of the JSON line: keep them out of the message text.
        temporalio.activity.logger.activity_info_on_message = False
        temporalio.workflow.logger.workflow_info_on_message = False
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])


def _rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _temporal_info() -> tuple[str, dict[str, str]] | None:
    """The workflow id of the activity or workflow running here, and what else is worth a field."""
    if temporalio.activity.in_activity():
        info = temporalio.activity.info()
        return info.workflow_id or "", {"activity": info.activity_type}
    if temporalio.workflow.in_workflow():
        winfo = temporalio.workflow.info()
        return winfo.workflow_id, {}
    return None


def _trace_id() -> str:
    span_context = trace.get_current_span().get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else ""
