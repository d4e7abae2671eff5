"""Search by meaning for `recall`: events' embeddings, kept in the transcript store, and a query
ranked both by words and by meaning. Off unless the worker is given `--embeddings-model`."""

from engram.embeddings.settings import EmbeddingSettings

__all__ = ["EmbeddingSettings"]
