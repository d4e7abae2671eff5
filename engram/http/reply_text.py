"""The text of a turn's answer as its messages arrive, as deltas a client can append.

Text messages are the answer as it is generated; the final answer is the whole of it. If the
model's reply restarts (a retried LLM call), the text before the restart was shown already and
cannot be taken back: deltas resume only where the new attempt has passed what was shown, and
if it says something else, the final answer (sent whole at the end of every format) is the
truth.
"""

from __future__ import annotations

from engram.v1 import agent_pb2
from engram.vocabulary import Notice


class ReplyText:
    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.shown = ""  # what the client was sent, as deltas
        self.attempt = ""  # what the current attempt has generated
        self.final: str | None = None
        self.error: tuple[str, str] | None = None  # (code, message)
        self.joined = False

    @property
    def done(self) -> bool:
        return self.final is not None or self.error is not None or self.joined

    def add(self, message: agent_pb2.ServerMessage) -> str:
        """Take one of the agent's messages; the text to append to what was shown ("" if
        none). Other turns' messages are ignored."""
        if message.message_id != self.message_id or self.done:
            return ""
        kind = message.WhichOneof("payload")
        if kind == "text":
            self.attempt += message.text.content
            return self._advance(self.attempt)
        if kind == "status" and message.status.status == Notice.RESTARTING:
            self.attempt = ""
        elif kind == "status" and message.status.status == Notice.JOINED:
            self.joined = True
        elif kind == "final_answer":
            delta = self._advance(message.final_answer.content)
            self.final = message.final_answer.content
            return delta
        elif kind == "error":
            self.error = (message.error.code or "agent_error", message.error.message)
        return ""

    def _advance(self, text: str) -> str:
        if len(text) > len(self.shown) and text.startswith(self.shown):
            delta = text[len(self.shown) :]
            self.shown = text
            return delta
        return ""
