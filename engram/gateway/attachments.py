"""Attachments at the API edge: which files the model can take, and their limits.

Images (png, jpeg, webp, gif) go to the model as image parts, for vision models; text-like files
(text/*, JSON, CSV, XML, YAML, TOML, source code) are inlined with their name. Anything else is
refused with INVALID_ARGUMENT naming the type, never dropped in silence. The bytes go to the
transcript store, by a name `name` gives (a keyed hash of the content when the store encrypts:
engram.codec.encrypted_store.blob_name); the agent's history carries only the reference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from engram.gateway.errors import invalid
from engram.v1 import agent_pb2
from engram.workflows.types import Attachment

IMAGE_SIGNATURES = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}
TEXT_TYPES = {
    "application/json",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/csv",
    "application/javascript",
    "application/typescript",
    "application/x-python",
    "application/x-sh",
    "application/sql",
}
DEFAULT_LIMIT = 10 * 1024 * 1024


def sha256_name(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(
    attachments: Sequence[agent_pb2.Attachment],
    per_file: int,
    per_message: int,
    name: Callable[[bytes], str] = sha256_name,
) -> list[tuple[Attachment, bytes]]:
    """Each attachment's reference and bytes; raises INVALID_ARGUMENT for any that cannot go."""
    total = sum(len(a.data) for a in attachments)
    if total > per_message:
        raise invalid(f"attachments come to {total} bytes; the limit per message is {per_message}")
    checked = []
    for a in attachments:
        label = f"attachment {a.name[:80]!r}"
        if not a.name or len(a.name) > 255:
            raise invalid("every attachment needs a name of 1 to 255 characters")
        if len(a.data) > per_file:
            raise invalid(f"{label} is {len(a.data)} bytes; the limit is {per_file}")
        mime = a.mime_type.split(";")[0].strip().lower()
        if mime in IMAGE_SIGNATURES:
            if not a.data.startswith(IMAGE_SIGNATURES[mime]):
                raise invalid(f"{label} is not a {mime} image")
            kind = "image"
        elif mime.startswith("text/") or mime in TEXT_TYPES:
            try:
                a.data.decode("utf-8")
            except UnicodeDecodeError:
                raise invalid(f"{label} ({mime}) is not UTF-8 text") from None
            kind = "text"
        else:
            raise invalid(
                f"{label} has type {a.mime_type or '(none)'!r}, which the model cannot take: send "
                "images (png, jpeg, webp, gif) or text (text/*, JSON, CSV, XML, YAML, code)"
            )
        checked.append((Attachment(a.name, mime, name(a.data), len(a.data), kind), a.data))
    return checked
