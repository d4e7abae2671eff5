from google.protobuf import empty_pb2 as _empty_pb2
from engram.v1 import agent_pb2 as _agent_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TurnRef(_message.Message):
    __slots__ = ("agent_id", "message_id")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    message_id: str
    def __init__(self, agent_id: _Optional[str] = ..., message_id: _Optional[str] = ...) -> None: ...

class RelayBatch(_message.Message):
    __slots__ = ("messages",)
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_agent_pb2.ServerMessage]
    def __init__(self, messages: _Optional[_Iterable[_Union[_agent_pb2.ServerMessage, _Mapping]]] = ...) -> None: ...
