"""Engram: a durable runtime for AI agents on Temporal."""

TASK_QUEUE = "engram-agents"
WORKFLOW_ID_PREFIX = "agent-"
