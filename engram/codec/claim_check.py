"""A claim check for Temporal payloads: a large one goes to the blob store, and the history keeps a
reference to it by content hash.

Temporal refuses a payload over 2 MB and warns from 256 KB, and a refused payload fails the task
that made it on every retry: a long-context agent's continue-as-new state, a prompt with a large
attachment or a long reply would wedge the agent. And every byte in history is paid for again on
every replay and kept for the run's life: a 20,000-character message used to add 160 KB to it.
Temporal's own external storage (experimental in temporalio 1.35) moves any payload over
HISTORY_INLINE_BYTES out of the history, after the codec, so a stored payload is encrypted
whenever encryption is on; this driver keeps it in Engram's blob store, which every worker and
gateway already shares (the SQLite file of `engram dev`, or PostgreSQL). Answers to queries are
never in history and are asked for again and again, so they stay inline up to INLINE_BYTES.
Chosen over a claim check of Engram's own because it covers every payload the SDK writes
(workflow input, continue-as-new state, activity input and result, heartbeats, updates, queries)
without each call site having to know.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Protocol

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    ExternalStorage,
    StorageDriver,
    StorageDriverClaim,
    StorageDriverRetrieveContext,
    StorageDriverSelectContext,
    StorageDriverStoreContext,
)

from engram.codec.payload_converter import QUERY_ANSWER

# Payloads larger than this leave the history: a chat turn's history then costs about the same
# whatever the size of its message, prompt, reply or tool output. At 2 KiB a turn cost 2.2 to
# 4.7 KB (most with payloads just under it); at 512 bytes, 2.2 to 2.5 KB, for a blob written as
# the turn ends (about 1.5 ms).
HISTORY_INLINE_BYTES = 512
# Query answers are never in history, and a follower asks for them again and again: they stay
# inline up to this, well under Temporal's 256 KB warning.
INLINE_BYTES = 128 * 1024


class BlobStore(Protocol):
    def put_blob(self, sha256: str, data: bytes) -> None: ...

    def get_blob(self, sha256: str) -> bytes | None: ...


class MissingPayload(RuntimeError):
    """A payload's reference points at nothing in the blob store (another store, or lost)."""


DRIVER_NAME = "engram-blobs"
# How Temporal's external storage marks the reference it leaves in a payload's place.
REFERENCE_TYPE = b"temporal.api.sdk.v1.ExternalStorageReference"


class BlobStoreDriver(StorageDriver):
    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs

    def name(self) -> str:
        return DRIVER_NAME

    async def store(
        self, context: StorageDriverStoreContext, payloads: Sequence[Payload]
    ) -> list[StorageDriverClaim]:
        claims = []
        for payload in payloads:
            data = payload.SerializeToString(deterministic=True)
            sha256 = hashlib.sha256(data).hexdigest()
            await asyncio.to_thread(self.blobs.put_blob, sha256, data)
            claims.append(StorageDriverClaim({"sha256": sha256}))
        return claims

    async def retrieve(
        self, context: StorageDriverRetrieveContext, claims: Sequence[StorageDriverClaim]
    ) -> list[Payload]:
        payloads = []
        for claim in claims:
            sha256 = claim.claim_data["sha256"]
            data = await asyncio.to_thread(self.blobs.get_blob, sha256)
            if data is None or hashlib.sha256(data).hexdigest() != sha256:
                raise MissingPayload(
                    f"payload {sha256} is not in the blob store: every worker and gateway must "
                    "share one transcript store"
                )
            payloads.append(Payload.FromString(data))
        return payloads


def payload_bytes(payload: Payload) -> int:
    """A payload's size, counting what the claim check moved to the blob store."""
    return sum(e.size_bytes for e in payload.external_payloads) or len(payload.data)


def resolved(payload: Payload, blobs: BlobStore) -> Payload:
    """The payload a reference in history stands for, read from `blobs` (for the Web UI, through
    the codec server); any other payload, or one the store lacks, as it is."""
    if payload.metadata.get("messageType") != REFERENCE_TYPE:
        return payload
    try:
        reference = json.loads(payload.data)
        sha256 = reference["claimData"]["sha256"]
    except (ValueError, KeyError, TypeError):
        return payload
    if reference.get("driverName") != DRIVER_NAME:
        return payload
    data = blobs.get_blob(sha256)
    if data is None or hashlib.sha256(data).hexdigest() != sha256:
        return payload
    return Payload.FromString(data)


def stays_inline(payload: Payload) -> bool:
    """Whether a payload over HISTORY_INLINE_BYTES stays inline all the same."""
    return QUERY_ANSWER in payload.metadata and payload.ByteSize() <= INLINE_BYTES


def with_claim_check(converter: DataConverter, blobs: BlobStore) -> DataConverter:
    """`converter`, moving payloads over INLINE_BYTES into `blobs`."""
    driver = BlobStoreDriver(blobs)

    def select(context: StorageDriverSelectContext, payload: Payload) -> StorageDriver | None:
        return None if stays_inline(payload) else driver

    storage = ExternalStorage(
        drivers=[driver], driver_selector=select, payload_size_threshold=HISTORY_INLINE_BYTES
    )
    return dataclasses.replace(converter, external_storage=storage)
