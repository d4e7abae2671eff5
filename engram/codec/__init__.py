"""Encryption at rest: Temporal payloads (a payload codec and its codec server) and the text in
the transcript store, with one keyring of AES-256 keys.

Encryption is on when `ENGRAM_ENCRYPTION_KEYS` or `ENGRAM_ENCRYPTION_KEYS_FILE` is set. Nothing
here is imported by workflow code: the codec runs in the SDK, outside the workflow sandbox.
"""

from engram.codec.encrypted_store import EncryptedTranscriptStore, encrypted_store
from engram.codec.keyring import (
    EncryptionKeyError,
    Keyring,
    KeyringError,
    keyring_from_env,
    new_key_entry,
)
from engram.codec.payload_codec import EncryptionCodec, data_converter, encrypted_data_converter

__all__ = [
    "EncryptedTranscriptStore",
    "EncryptionCodec",
    "EncryptionKeyError",
    "Keyring",
    "KeyringError",
    "data_converter",
    "encrypted_data_converter",
    "encrypted_store",
    "keyring_from_env",
    "new_key_entry",
]
