from google.protobuf import empty_pb2 as _empty_pb2
from engram.v1 import agent_pb2 as _agent_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
