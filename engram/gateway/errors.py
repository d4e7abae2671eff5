"""Failures the gateway reports to clients as gRPC statuses, and their translation from Temporal."""

from __future__ import annotations

import grpc
from temporalio.client import (
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from engram.auth.limits import LimitExceeded
from engram.vocabulary import ErrorType


class GatewayError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def invalid(message: str) -> GatewayError:
    return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, message)


def from_temporal(err: BaseException, agent_id: str) -> GatewayError:
    """The client-facing status for a Temporal failure concerning one agent."""
    if isinstance(err, GatewayError):
        return err
    if isinstance(err, LimitExceeded):  # a Chat stream's message over its key's rate
        return GatewayError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err))
    if isinstance(err, RPCError):
        if err.status == RPCStatusCode.NOT_FOUND:
            # An update sent as the agent's workflow closes (just deleted) is aborted with
            # "workflow update was aborted by closing workflow".
            if any(word in err.message.lower() for word in ("completed", "closing workflow")):
                return GatewayError(
                    grpc.StatusCode.FAILED_PRECONDITION, f"agent {agent_id} has been deleted"
                )
            return GatewayError(grpc.StatusCode.NOT_FOUND, f"agent {agent_id} not found")
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid request: {err.message}")
        if err.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            # How the SDK reports its own call deadline passing ("Timeout expired").
            RPCStatusCode.CANCELLED,
        ):
            return GatewayError(grpc.StatusCode.UNAVAILABLE, "Temporal is unavailable; try again")
        if err.status == RPCStatusCode.UNKNOWN:
            # How a connection to Temporal cut mid-call (its server restarting) is reported: the
            # agent is untouched, and the call can be made again.
            return GatewayError(
                grpc.StatusCode.UNAVAILABLE, f"Temporal is unavailable ({err.message}); try again"
            )
        if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            # Temporal's per-workflow limits (updates in flight, or the server's rate limits):
            # the agent is fine, and a call a moment later gets through.
            return GatewayError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"agent {agent_id} is handling as many requests as it can take at once; "
                "try again in a moment",
            )
        return GatewayError(grpc.StatusCode.INTERNAL, f"Temporal error: {err.status.name}")
    if isinstance(err, WorkflowUpdateFailedError):
        cause = err.cause
        if (
            isinstance(cause, ApplicationError)
            and cause.type == ErrorType.ACCEPTED_UPDATE_COMPLETED_WORKFLOW
        ):
            return GatewayError(
                grpc.StatusCode.FAILED_PRECONDITION, f"agent {agent_id} was deleted mid-turn"
            )
        if isinstance(cause, ApplicationError) and cause.type == ErrorType.FAILED_PRECONDITION:
            return GatewayError(grpc.StatusCode.FAILED_PRECONDITION, cause.message)
        message = cause.message if isinstance(cause, ApplicationError) else str(cause)
        return GatewayError(grpc.StatusCode.INVALID_ARGUMENT, message)
    if isinstance(err, WorkflowUpdateRPCTimeoutOrCancelledError):
        return GatewayError(grpc.StatusCode.UNAVAILABLE, "timed out waiting for the agent")
    if isinstance(err, (WorkflowQueryFailedError, WorkflowQueryRejectedError)):
        return GatewayError(grpc.StatusCode.INTERNAL, f"agent {agent_id} could not be read")
    return GatewayError(grpc.StatusCode.INTERNAL, "internal error")
