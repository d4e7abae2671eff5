"""The HTTP API: OpenAI-compatible Chat Completions and Responses, and Engram's resources as JSON.

Every route calls the gateway's own AgentService (engram.gateway.agent_service) with the caller's
principal set, as the gRPC interceptor does: the same validation, tenancy, NOT_FOUND rules and
limits, reported as OpenAI-style error objects (engram.http.errors).
"""
