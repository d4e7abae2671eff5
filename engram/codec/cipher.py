"""Sealing bytes with the keyring: AES-256-GCM, a random 96-bit nonce per message.

What is sealed carries the id of its key beside it (in payload metadata, or in the sealed text),
and associated data binds it to where it belongs, so a sealed value moved elsewhere, or relabelled
with another key id, fails to open instead of decrypting into the wrong place.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from engram.codec.keyring import EncryptionKeyError, Keyring

NONCE_BYTES = 12


def seal(key: bytes, plaintext: bytes, associated: bytes) -> bytes:
    """nonce + ciphertext + tag. Callers seal with `Keyring.newest` and record its id."""
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, associated)


def unseal(keyring: Keyring, key_id: str, sealed: bytes, associated: bytes) -> bytes:
    """The plaintext; EncryptionKeyError naming `key_id` when it cannot be opened."""
    key = keyring.key(key_id)
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], associated)
    except InvalidTag:
        raise EncryptionKeyError(
            key_id,
            f"data encrypted with key {key_id!r} does not open with the key configured under "
            f"that id: the key material is wrong, or the data was altered",
        ) from None
