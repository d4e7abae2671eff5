"""The payload codec: every Temporal payload compressed, then encrypted, before it leaves.

A payload (its metadata and data, serialized whole) is compressed with zlib when that makes it
smaller (an agent's prompts repeat the same system prompt, notes and turns from one LLM call to the
next, so most of its history compresses well), then sealed with the newest key. What Temporal
stores is a `binary/encrypted` payload with the key id in its metadata. Payloads without that
encoding, written before encryption was turned on, pass through decode unchanged, so running
agents and recorded histories keep working.

Compressing before encrypting lets a payload's size depend on how much of it repeats; anyone who
can both inject text into a prompt and watch history sizes could learn something from that. The
saving (see tests/test_codec.py) is worth it for Engram's threat model: at-rest storage readers.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from engram.codec.cipher import seal, unseal
from engram.codec.keyring import EncryptionKeyError, Keyring
from engram.codec.payload_converter import QUERY_ANSWER, EngramPayloadConverter

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
COMPRESSION_METADATA = "engram-compression"
ZLIB = b"zlib"
NO_COMPRESSION = b"none"
ZLIB_LEVEL = 6


def _associated(key_id: bytes, compression: bytes) -> bytes:
    # Binds the metadata to the ciphertext: relabelling either makes decryption fail.
    return b"engram/payload/v1\x00" + key_id + b"\x00" + compression


class PayloadCipher:
    """One payload at a time, synchronously: shared by the codec and the codec server."""

    def __init__(self, keyring: Keyring) -> None:
        self.keyring = keyring

    def encode(self, payload: Payload) -> Payload:
        plain = payload.SerializeToString()
        packed = zlib.compress(plain, ZLIB_LEVEL)
        compression = ZLIB
        if len(packed) >= len(plain):
            packed, compression = plain, NO_COMPRESSION
        key_name, key = self.keyring.newest
        key_id = key_name.encode()
        sealed = seal(key, packed, _associated(key_id, compression))
        metadata = {"encoding": ENCODING, KEY_ID_METADATA: key_id}
        if compression != NO_COMPRESSION:  # absent means none: small payloads stay small
            metadata[COMPRESSION_METADATA] = compression
        if QUERY_ANSWER in payload.metadata:  # where it is stored, not what it says
            metadata[QUERY_ANSWER] = payload.metadata[QUERY_ANSWER]
        return Payload(metadata=metadata, data=sealed)

    def decode(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written before encryption was turned on
        raw_id = payload.metadata.get(KEY_ID_METADATA)
        if raw_id is None:
            raise EncryptionKeyError(
                "", "an encrypted payload has no encryption-key-id: not written by Engram's codec"
            )
        key_id = raw_id.decode(errors="replace")
        compression = payload.metadata.get(COMPRESSION_METADATA, NO_COMPRESSION)
        packed = unseal(self.keyring, key_id, payload.data, _associated(raw_id, compression))
        if compression == ZLIB:
            packed = zlib.decompress(packed)
        elif compression != NO_COMPRESSION:
            raise EncryptionKeyError(key_id, f"unknown payload compression {compression!r}")
        return Payload.FromString(packed)


class EncryptionCodec(PayloadCodec):
    """Temporal's codec interface over PayloadCipher."""

    def __init__(self, keyring: Keyring) -> None:
        self.cipher = PayloadCipher(keyring)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.cipher.encode(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.cipher.decode(p) for p in payloads]


def encrypted_data_converter(keyring: Keyring) -> DataConverter:
    """The data converter for every client, worker and replayer when encryption is on.

    Failure messages and stack traces move into an encoded payload too: an error can quote what
    the model or a tool was given.
    """
    return DataConverter(
        payload_converter_class=EngramPayloadConverter,
        payload_codec=EncryptionCodec(keyring),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )


PLAIN = DataConverter(payload_converter_class=EngramPayloadConverter)
"""The data converter when encryption is off: Temporal's default, decoding dataclasses faster."""


def data_converter(keyring: Keyring | None) -> DataConverter:
    """`encrypted_data_converter(keyring)`, or `PLAIN` when encryption is off."""
    return PLAIN if keyring is None else encrypted_data_converter(keyring)
