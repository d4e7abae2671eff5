"""proto/ is a superset of the published engram-sdk 0.1.1 contract, and the stubs match proto/."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
from pathlib import Path

from google.protobuf import descriptor_pb2

from engram.v1 import agent_pb2

ROOT = Path(__file__).resolve().parent.parent
DUMP_SDK_DESCRIPTOR = """
import base64
from google.protobuf import descriptor_pb2
from engram.v1 import agent_pb2
proto = descriptor_pb2.FileDescriptorProto()
agent_pb2.DESCRIPTOR.CopyToProto(proto)
print(base64.b64encode(proto.SerializeToString()).decode())
"""


def file_proto(descriptor: object) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    descriptor.CopyToProto(proto)  # type: ignore[attr-defined]
    return proto


def messages(
    proto: descriptor_pb2.FileDescriptorProto,
) -> dict[str, descriptor_pb2.DescriptorProto]:
    found = {}

    def walk(prefix: str, items: list[descriptor_pb2.DescriptorProto]) -> None:
        for item in items:
            found[prefix + item.name] = item
            walk(f"{prefix}{item.name}.", list(item.nested_type))

    walk("", list(proto.message_type))
    return found


def test_superset_of_published_sdk(sdk_python: Path) -> None:
    dumped = subprocess.run(
        [str(sdk_python), "-c", DUMP_SDK_DESCRIPTOR],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    ).stdout
    theirs = descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode(dumped))
    ours = file_proto(agent_pb2.DESCRIPTOR)
    assert ours.package == theirs.package == "dura.api.v1"

    our_messages = messages(ours)
    for name, message in messages(theirs).items():
        assert name in our_messages, f"message {name} is missing"
        our_fields = {f.number: f for f in our_messages[name].field}
        for field in message.field:
            mine = our_fields.get(field.number)
            assert mine is not None, f"{name}.{field.name} = {field.number} is missing"
            for attribute in ("name", "type", "label", "type_name", "oneof_index"):
                assert getattr(mine, attribute) == getattr(field, attribute), (
                    name,
                    field.name,
                    attribute,
                )
        assert [o.name for o in message.oneof_decl] == [
            o.name for o in our_messages[name].oneof_decl[: len(message.oneof_decl)]
        ]

    [their_service] = theirs.service
    our_service = next(s for s in ours.service if s.name == their_service.name)
    our_methods = {m.name: m for m in our_service.method}
    for method in their_service.method:
        assert method.name in our_methods, method.name
        our_method = our_methods[method.name]
        for attribute in ("input_type", "output_type", "client_streaming", "server_streaming"):
            assert getattr(our_method, attribute) == getattr(method, attribute), (
                method.name,
                attribute,
            )


def test_generated_stubs_match_proto(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts" / "gen_proto.py")
    assert spec is not None and spec.loader is not None
    gen_proto = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen_proto)
    gen_proto.generate(tmp_path)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "nothing was generated"
    for relative in generated:
        checked_in = ROOT / "engram" / relative.relative_to("engram")
        assert checked_in.exists(), f"{checked_in} is missing: run python scripts/gen_proto.py"
        assert checked_in.read_bytes() == (tmp_path / relative).read_bytes(), (
            f"{checked_in} differs from proto/: run python scripts/gen_proto.py"
        )
