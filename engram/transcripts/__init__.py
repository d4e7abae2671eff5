"""Where an agent's old stream messages and turns live once workflow state lets go of them."""

from engram.transcripts.store import TranscriptStore, open_transcript_store

__all__ = ["TranscriptStore", "open_transcript_store"]
