import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetAgentStatusRequest(_message.Message):
    __slots__ = ("agent_id", "status")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    status: str
    def __init__(self, agent_id: _Optional[str] = ..., status: _Optional[str] = ...) -> None: ...

class SetAgentStatusResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class CreateAgentRequest(_message.Message):
    __slots__ = ("goal", "model", "metadata", "tools", "system_prompt", "config", "parent_id")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    GOAL_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    goal: str
    model: str
    metadata: _containers.ScalarMap[str, str]
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    system_prompt: str
    config: AgentConfig
    parent_id: str
    def __init__(self, goal: _Optional[str] = ..., model: _Optional[str] = ..., metadata: _Optional[_Mapping[str, str]] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., system_prompt: _Optional[str] = ..., config: _Optional[_Union[AgentConfig, _Mapping]] = ..., parent_id: _Optional[str] = ...) -> None: ...

class CreateAgentResponse(_message.Message):
    __slots__ = ("agent_id", "agent")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    agent: Agent
    def __init__(self, agent_id: _Optional[str] = ..., agent: _Optional[_Union[Agent, _Mapping]] = ...) -> None: ...

class AgentConfig(_message.Message):
    __slots__ = ("max_steps", "max_duration", "temperature", "max_context_tokens", "enable_thinking", "enable_observation", "auto_approve_read_only", "autonomous", "max_run_tokens", "double_texting", "disable_recall", "fallback_models", "max_cost_usd")
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_DURATION_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ENABLE_THINKING_FIELD_NUMBER: _ClassVar[int]
    ENABLE_OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    AUTO_APPROVE_READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    AUTONOMOUS_FIELD_NUMBER: _ClassVar[int]
    MAX_RUN_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_TEXTING_FIELD_NUMBER: _ClassVar[int]
    DISABLE_RECALL_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_MODELS_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_USD_FIELD_NUMBER: _ClassVar[int]
    max_steps: int
    max_duration: _duration_pb2.Duration
    temperature: float
    max_context_tokens: int
    enable_thinking: bool
    enable_observation: bool
    auto_approve_read_only: bool
    autonomous: bool
    max_run_tokens: int
    double_texting: str
    disable_recall: bool
    fallback_models: _containers.RepeatedScalarFieldContainer[str]
    max_cost_usd: float
    def __init__(self, max_steps: _Optional[int] = ..., max_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., temperature: _Optional[float] = ..., max_context_tokens: _Optional[int] = ..., enable_thinking: _Optional[bool] = ..., enable_observation: _Optional[bool] = ..., auto_approve_read_only: _Optional[bool] = ..., autonomous: _Optional[bool] = ..., max_run_tokens: _Optional[int] = ..., double_texting: _Optional[str] = ..., disable_recall: _Optional[bool] = ..., fallback_models: _Optional[_Iterable[str]] = ..., max_cost_usd: _Optional[float] = ...) -> None: ...

class Run(_message.Message):
    __slots__ = ("instructions",)
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    instructions: str
    def __init__(self, instructions: _Optional[str] = ...) -> None: ...

class RunInfo(_message.Message):
    __slots__ = ("run_id", "state", "steps", "tokens", "started_at", "sleeping_until", "cost_usd")
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    SLEEPING_UNTIL_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    run_id: str
    state: str
    steps: int
    tokens: int
    started_at: _timestamp_pb2.Timestamp
    sleeping_until: _timestamp_pb2.Timestamp
    cost_usd: float
    def __init__(self, run_id: _Optional[str] = ..., state: _Optional[str] = ..., steps: _Optional[int] = ..., tokens: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sleeping_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class Agent(_message.Message):
    __slots__ = ("agent_id", "goal", "status", "created_at", "updated_at", "metadata", "stats", "model", "system_prompt", "tools", "config", "queued_messages", "last_sequence_id", "memory", "pending_calls", "run", "parent_id", "children", "attention", "forked_from", "fork_sequence")
    class MetadataEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    GOAL_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_PROMPT_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    QUEUED_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    MEMORY_FIELD_NUMBER: _ClassVar[int]
    PENDING_CALLS_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHILDREN_FIELD_NUMBER: _ClassVar[int]
    ATTENTION_FIELD_NUMBER: _ClassVar[int]
    FORKED_FROM_FIELD_NUMBER: _ClassVar[int]
    FORK_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    goal: str
    status: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    metadata: _containers.ScalarMap[str, str]
    stats: AgentStats
    model: str
    system_prompt: str
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    config: AgentConfig
    queued_messages: int
    last_sequence_id: int
    memory: _containers.RepeatedCompositeFieldContainer[MemoryNote]
    pending_calls: _containers.RepeatedCompositeFieldContainer[PendingToolCall]
    run: RunInfo
    parent_id: str
    children: _containers.RepeatedScalarFieldContainer[str]
    attention: str
    forked_from: str
    fork_sequence: int
    def __init__(self, agent_id: _Optional[str] = ..., goal: _Optional[str] = ..., status: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., metadata: _Optional[_Mapping[str, str]] = ..., stats: _Optional[_Union[AgentStats, _Mapping]] = ..., model: _Optional[str] = ..., system_prompt: _Optional[str] = ..., tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ..., config: _Optional[_Union[AgentConfig, _Mapping]] = ..., queued_messages: _Optional[int] = ..., last_sequence_id: _Optional[int] = ..., memory: _Optional[_Iterable[_Union[MemoryNote, _Mapping]]] = ..., pending_calls: _Optional[_Iterable[_Union[PendingToolCall, _Mapping]]] = ..., run: _Optional[_Union[RunInfo, _Mapping]] = ..., parent_id: _Optional[str] = ..., children: _Optional[_Iterable[str]] = ..., attention: _Optional[str] = ..., forked_from: _Optional[str] = ..., fork_sequence: _Optional[int] = ...) -> None: ...

class MemoryNote(_message.Message):
    __slots__ = ("name", "content", "updated_at")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    name: str
    content: str
    updated_at: _timestamp_pb2.Timestamp
    def __init__(self, name: _Optional[str] = ..., content: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AgentStats(_message.Message):
    __slots__ = ("total_steps", "tool_calls", "total_duration", "tokens_used", "cost_usd")
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_DURATION_FIELD_NUMBER: _ClassVar[int]
    TOKENS_USED_FIELD_NUMBER: _ClassVar[int]
    COST_USD_FIELD_NUMBER: _ClassVar[int]
    total_steps: int
    tool_calls: int
    total_duration: _duration_pb2.Duration
    tokens_used: int
    cost_usd: float
    def __init__(self, total_steps: _Optional[int] = ..., tool_calls: _Optional[int] = ..., total_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., tokens_used: _Optional[int] = ..., cost_usd: _Optional[float] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("agent_id", "client_timestamp", "user_input", "pause", "resume", "edit", "cancel", "tool_result", "approval", "run", "message_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    USER_INPUT_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    EDIT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    client_timestamp: _timestamp_pb2.Timestamp
    user_input: UserInput
    pause: Pause
    resume: Resume
    edit: Edit
    cancel: Cancel
    tool_result: ToolResult
    approval: Approval
    run: Run
    message_id: str
    def __init__(self, agent_id: _Optional[str] = ..., client_timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., user_input: _Optional[_Union[UserInput, _Mapping]] = ..., pause: _Optional[_Union[Pause, _Mapping]] = ..., resume: _Optional[_Union[Resume, _Mapping]] = ..., edit: _Optional[_Union[Edit, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., tool_result: _Optional[_Union[ToolResult, _Mapping]] = ..., approval: _Optional[_Union[Approval, _Mapping]] = ..., run: _Optional[_Union[Run, _Mapping]] = ..., message_id: _Optional[str] = ...) -> None: ...

class Approval(_message.Message):
    __slots__ = ("call_id", "approved", "reason", "edited_input_json", "response", "stop_asking", "decided_by")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EDITED_INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    STOP_ASKING_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    approved: bool
    reason: str
    edited_input_json: str
    response: str
    stop_asking: bool
    decided_by: str
    def __init__(self, call_id: _Optional[str] = ..., approved: _Optional[bool] = ..., reason: _Optional[str] = ..., edited_input_json: _Optional[str] = ..., response: _Optional[str] = ..., stop_asking: _Optional[bool] = ..., decided_by: _Optional[str] = ...) -> None: ...

class UserInput(_message.Message):
    __slots__ = ("content", "attachments")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    content: str
    attachments: _containers.RepeatedCompositeFieldContainer[Attachment]
    def __init__(self, content: _Optional[str] = ..., attachments: _Optional[_Iterable[_Union[Attachment, _Mapping]]] = ...) -> None: ...

class Attachment(_message.Message):
    __slots__ = ("name", "mime_type", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MIME_TYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    mime_type: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., mime_type: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class Pause(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Resume(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Cancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Retry(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Edit(_message.Message):
    __slots__ = ("patch", "description")
    PATCH_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    patch: _struct_pb2.Struct
    description: str
    def __init__(self, patch: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., description: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("agent_id", "sequence_id", "timestamp", "thought", "observation", "tool_call", "tool_result", "text", "final_answer", "error", "status", "heartbeat", "user_message", "message_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    THOUGHT_FIELD_NUMBER: _ClassVar[int]
    OBSERVATION_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_ANSWER_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    USER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    sequence_id: int
    timestamp: _timestamp_pb2.Timestamp
    thought: Thought
    observation: Observation
    tool_call: ToolCall
    tool_result: ToolResult
    text: TextOutput
    final_answer: FinalAnswer
    error: Error
    status: StatusUpdate
    heartbeat: Heartbeat
    user_message: UserMessage
    message_id: str
    def __init__(self, agent_id: _Optional[str] = ..., sequence_id: _Optional[int] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., thought: _Optional[_Union[Thought, _Mapping]] = ..., observation: _Optional[_Union[Observation, _Mapping]] = ..., tool_call: _Optional[_Union[ToolCall, _Mapping]] = ..., tool_result: _Optional[_Union[ToolResult, _Mapping]] = ..., text: _Optional[_Union[TextOutput, _Mapping]] = ..., final_answer: _Optional[_Union[FinalAnswer, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., status: _Optional[_Union[StatusUpdate, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., user_message: _Optional[_Union[UserMessage, _Mapping]] = ..., message_id: _Optional[str] = ...) -> None: ...

class Thought(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: str
    def __init__(self, content: _Optional[str] = ...) -> None: ...

class Observation(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: str
    def __init__(self, content: _Optional[str] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("tool_name", "input_json", "call_id")
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    tool_name: str
    input_json: str
    call_id: str
    def __init__(self, tool_name: _Optional[str] = ..., input_json: _Optional[str] = ..., call_id: _Optional[str] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("call_id", "output", "is_error", "error_message")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    ERROR_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    output: str
    is_error: bool
    error_message: str
    def __init__(self, call_id: _Optional[str] = ..., output: _Optional[str] = ..., is_error: _Optional[bool] = ..., error_message: _Optional[str] = ...) -> None: ...

class TextOutput(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: str
    def __init__(self, content: _Optional[str] = ...) -> None: ...

class FinalAnswer(_message.Message):
    __slots__ = ("content", "structured")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    STRUCTURED_FIELD_NUMBER: _ClassVar[int]
    content: str
    structured: _struct_pb2.Struct
    def __init__(self, content: _Optional[str] = ..., structured: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class StatusUpdate(_message.Message):
    __slots__ = ("status", "message")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    status: str
    message: str
    def __init__(self, status: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class UserMessage(_message.Message):
    __slots__ = ("content",)
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content: str
    def __init__(self, content: _Optional[str] = ...) -> None: ...

class GetAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("status_filter", "page_size", "page_token")
    STATUS_FILTER_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status_filter: str
    page_size: int
    page_token: str
    def __init__(self, status_filter: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents", "next_page_token")
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[Agent]
    next_page_token: str
    def __init__(self, agents: _Optional[_Iterable[_Union[Agent, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteAgentRequest(_message.Message):
    __slots__ = ("agent_id", "force")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    FORCE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    force: bool
    def __init__(self, agent_id: _Optional[str] = ..., force: _Optional[bool] = ...) -> None: ...

class ControlAgentRequest(_message.Message):
    __slots__ = ("agent_id", "pause", "resume", "cancel", "retry", "edit", "approval", "tool_result", "run")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAUSE_FIELD_NUMBER: _ClassVar[int]
    RESUME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    EDIT_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    pause: Pause
    resume: Resume
    cancel: Cancel
    retry: Retry
    edit: Edit
    approval: Approval
    tool_result: ToolResult
    run: Run
    def __init__(self, agent_id: _Optional[str] = ..., pause: _Optional[_Union[Pause, _Mapping]] = ..., resume: _Optional[_Union[Resume, _Mapping]] = ..., cancel: _Optional[_Union[Cancel, _Mapping]] = ..., retry: _Optional[_Union[Retry, _Mapping]] = ..., edit: _Optional[_Union[Edit, _Mapping]] = ..., approval: _Optional[_Union[Approval, _Mapping]] = ..., tool_result: _Optional[_Union[ToolResult, _Mapping]] = ..., run: _Optional[_Union[Run, _Mapping]] = ...) -> None: ...

class ControlAgentResponse(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class ReplayRequest(_message.Message):
    __slots__ = ("agent_id", "from_sequence", "include_history")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    from_sequence: int
    include_history: bool
    def __init__(self, agent_id: _Optional[str] = ..., from_sequence: _Optional[int] = ..., include_history: _Optional[bool] = ...) -> None: ...

class Tool(_message.Message):
    __slots__ = ("name", "description", "parameters_schema", "requires_confirmation", "approval", "read_only", "approval_timeout", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    REQUIRES_CONFIRMATION_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_schema: _struct_pb2.Struct
    requires_confirmation: bool
    approval: str
    read_only: bool
    approval_timeout: _duration_pb2.Duration
    kind: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., requires_confirmation: _Optional[bool] = ..., approval: _Optional[str] = ..., read_only: _Optional[bool] = ..., approval_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., kind: _Optional[str] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[Tool]
    def __init__(self, tools: _Optional[_Iterable[_Union[Tool, _Mapping]]] = ...) -> None: ...

class PendingToolCall(_message.Message):
    __slots__ = ("call_id", "tool_name", "input_json", "waiting_for", "since", "deadline", "message_id")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    tool_name: str
    input_json: str
    waiting_for: str
    since: _timestamp_pb2.Timestamp
    deadline: _timestamp_pb2.Timestamp
    message_id: str
    def __init__(self, call_id: _Optional[str] = ..., tool_name: _Optional[str] = ..., input_json: _Optional[str] = ..., waiting_for: _Optional[str] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., deadline: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message_id: _Optional[str] = ...) -> None: ...

class GetHistoryRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class GetHistoryResponse(_message.Message):
    __slots__ = ("turns",)
    TURNS_FIELD_NUMBER: _ClassVar[int]
    turns: _containers.RepeatedCompositeFieldContainer[Turn]
    def __init__(self, turns: _Optional[_Iterable[_Union[Turn, _Mapping]]] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("message_id", "user", "reply", "outcome", "error", "first_sequence_id", "last_sequence_id", "started_at", "ended_at")
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    REPLY_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENDED_AT_FIELD_NUMBER: _ClassVar[int]
    message_id: str
    user: str
    reply: str
    outcome: str
    error: str
    first_sequence_id: int
    last_sequence_id: int
    started_at: _timestamp_pb2.Timestamp
    ended_at: _timestamp_pb2.Timestamp
    def __init__(self, message_id: _Optional[str] = ..., user: _Optional[str] = ..., reply: _Optional[str] = ..., outcome: _Optional[str] = ..., error: _Optional[str] = ..., first_sequence_id: _Optional[int] = ..., last_sequence_id: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ended_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Schedule(_message.Message):
    __slots__ = ("schedule_id", "agent_id", "name", "cron", "every", "instructions", "overlap", "timezone", "next_fire", "fired", "paused", "created_at")
    SCHEDULE_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    NEXT_FIRE_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    PAUSED_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    schedule_id: str
    agent_id: str
    name: str
    cron: _containers.RepeatedScalarFieldContainer[str]
    every: _duration_pb2.Duration
    instructions: str
    overlap: str
    timezone: str
    next_fire: _timestamp_pb2.Timestamp
    fired: int
    paused: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, schedule_id: _Optional[str] = ..., agent_id: _Optional[str] = ..., name: _Optional[str] = ..., cron: _Optional[_Iterable[str]] = ..., every: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., instructions: _Optional[str] = ..., overlap: _Optional[str] = ..., timezone: _Optional[str] = ..., next_fire: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., fired: _Optional[int] = ..., paused: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateScheduleRequest(_message.Message):
    __slots__ = ("agent_id", "name", "cron", "every", "instructions", "overlap", "timezone")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CRON_FIELD_NUMBER: _ClassVar[int]
    EVERY_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    OVERLAP_FIELD_NUMBER: _ClassVar[int]
    TIMEZONE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    name: str
    cron: _containers.RepeatedScalarFieldContainer[str]
    every: _duration_pb2.Duration
    instructions: str
    overlap: str
    timezone: str
    def __init__(self, agent_id: _Optional[str] = ..., name: _Optional[str] = ..., cron: _Optional[_Iterable[str]] = ..., every: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., instructions: _Optional[str] = ..., overlap: _Optional[str] = ..., timezone: _Optional[str] = ...) -> None: ...

class ListSchedulesRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class ListSchedulesResponse(_message.Message):
    __slots__ = ("schedules",)
    SCHEDULES_FIELD_NUMBER: _ClassVar[int]
    schedules: _containers.RepeatedCompositeFieldContainer[Schedule]
    def __init__(self, schedules: _Optional[_Iterable[_Union[Schedule, _Mapping]]] = ...) -> None: ...

class DeleteScheduleRequest(_message.Message):
    __slots__ = ("agent_id", "name")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    name: str
    def __init__(self, agent_id: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class SearchHistoryRequest(_message.Message):
    __slots__ = ("agent_id", "query", "from_sequence", "since", "until", "page")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    query: str
    from_sequence: int
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    page: int
    def __init__(self, agent_id: _Optional[str] = ..., query: _Optional[str] = ..., from_sequence: _Optional[int] = ..., since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., page: _Optional[int] = ...) -> None: ...

class SearchHit(_message.Message):
    __slots__ = ("sequence_id", "time", "kind", "code", "excerpt")
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    EXCERPT_FIELD_NUMBER: _ClassVar[int]
    sequence_id: int
    time: _timestamp_pb2.Timestamp
    kind: str
    code: str
    excerpt: str
    def __init__(self, sequence_id: _Optional[int] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., kind: _Optional[str] = ..., code: _Optional[str] = ..., excerpt: _Optional[str] = ...) -> None: ...

class SearchHistoryResponse(_message.Message):
    __slots__ = ("hits", "more")
    HITS_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[SearchHit]
    more: bool
    def __init__(self, hits: _Optional[_Iterable[_Union[SearchHit, _Mapping]]] = ..., more: _Optional[bool] = ...) -> None: ...

class ForkAgentRequest(_message.Message):
    __slots__ = ("agent_id", "at_sequence")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    AT_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    at_sequence: int
    def __init__(self, agent_id: _Optional[str] = ..., at_sequence: _Optional[int] = ...) -> None: ...

class ForkAgentResponse(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class RewindAgentRequest(_message.Message):
    __slots__ = ("agent_id", "to_sequence")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TO_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    to_sequence: int
    def __init__(self, agent_id: _Optional[str] = ..., to_sequence: _Optional[int] = ...) -> None: ...

class RewindAgentResponse(_message.Message):
    __slots__ = ("agent_id", "branch_agent_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    BRANCH_AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    branch_agent_id: str
    def __init__(self, agent_id: _Optional[str] = ..., branch_agent_id: _Optional[str] = ...) -> None: ...
