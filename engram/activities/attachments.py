"""Attachments, as the model is sent them: images as image parts, text files inlined by name.

Workflow history carries only references (name, type, content hash); the bytes are read here,
from the transcript store's blob table, when the request is built.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from engram.workflows.types import ChatMessage

Blobs = Callable[[str], bytes | None]


class MissingAttachment(Exception):
    pass


def render(message: ChatMessage, blobs: Blobs, max_text_chars: int = 0) -> dict[str, Any]:
    """One prompt message in OpenAI's wire form. Attached text past `max_text_chars` in all (0:
    no limit) is cut with a note: a file may be far larger than any model's context."""
    if not message.attachments:
        return {"role": message.role, "content": message.content}
    text = message.content
    room = max_text_chars or -1
    images: list[dict[str, Any]] = []
    for attachment in message.attachments:
        data = blobs(attachment.sha256)
        if data is None:
            raise MissingAttachment(f"attachment {attachment.name!r} is missing from the store")
        if attachment.kind == "image":
            url = f"data:{attachment.mime_type};base64,{base64.b64encode(data).decode()}"
            images.append({"type": "image_url", "image_url": {"url": url}})
        else:
            body = data.decode("utf-8", errors="replace")
            if room >= 0:
                body, room = _within(body, room, attachment.name)
            text += (
                f"\n\nAttached file {attachment.name} ({attachment.mime_type}):\n```\n{body}\n```"
            )
    if not images:
        return {"role": message.role, "content": text}
    return {"role": message.role, "content": [{"type": "text", "text": text}, *images]}


def _within(body: str, room: int, name: str) -> tuple[str, int]:
    """`body` cut to `room` characters, and the room left."""
    if len(body) <= room:
        return body, room - len(body)
    cut = len(body) - room
    note = (
        f"\n[... {cut} more characters of {name} not shown: the file is larger than this "
        "agent's context budget allows; it is kept whole in the transcript store]"
    )
    return body[:room] + note, 0
