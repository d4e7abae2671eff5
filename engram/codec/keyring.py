"""The encryption keys: AES-256 keys by id, newest last, from the environment or a file.

`ENGRAM_ENCRYPTION_KEYS="id1:base64key,id2:base64key"` or `ENGRAM_ENCRYPTION_KEYS_FILE=path` (the
same entries, one a line or comma-separated, `#` comments). New data is sealed with the newest
key; every key in the ring still opens what it sealed, which is how keys rotate: add a new key
last, restart every process, and drop the old one only once nothing sealed with it is kept.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

KEYS_VARIABLE = "ENGRAM_ENCRYPTION_KEYS"
KEYS_FILE_VARIABLE = "ENGRAM_ENCRYPTION_KEYS_FILE"
KEY_BYTES = 32  # AES-256
# Ids travel in payload metadata and inside sealed transcript fields (split on ':').
KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

log = logging.getLogger(__name__)


class KeyringError(ValueError):
    """The keyring's configuration is wrong: refuse to start rather than write plaintext."""


class EncryptionKeyError(Exception):
    """Data cannot be opened: its key is not in the ring, or the key under that id is not the one
    that sealed it (or the data was altered). The message names the key id."""

    def __init__(self, key_id: str, message: str) -> None:
        super().__init__(message)
        self.key_id = key_id


@dataclass(frozen=True)
class Keyring:
    """AES-256 keys by id, in order; the last is the one new data is sealed with."""

    # repr=False: key material must never reach a log line or a traceback.
    keys: tuple[tuple[str, bytes], ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyringError("the encryption keyring is empty")
        seen: set[str] = set()
        for key_id, key in self.keys:
            if not KEY_ID.fullmatch(key_id):
                raise KeyringError(
                    f"encryption key id {key_id!r}: use 1-64 letters, digits, '.', '_' or '-'"
                )
            if key_id in seen:
                raise KeyringError(f"encryption key id {key_id!r} appears twice")
            if len(key) != KEY_BYTES:
                raise KeyringError(
                    f"encryption key {key_id!r} is {len(key)} bytes; AES-256 needs {KEY_BYTES}"
                )
            seen.add(key_id)

    def __repr__(self) -> str:
        return f"Keyring(ids={self.ids})"

    @property
    def ids(self) -> list[str]:
        return [key_id for key_id, _ in self.keys]

    @property
    def newest(self) -> tuple[str, bytes]:
        return self.keys[-1]

    def key(self, key_id: str) -> bytes:
        """The key under `key_id`; an EncryptionKeyError naming it if the ring lacks it."""
        for candidate, key in self.keys:
            if candidate == key_id:
                return key
        raise EncryptionKeyError(
            key_id,
            f"data was encrypted with key {key_id!r}, which is not in the keyring "
            f"(keys: {', '.join(self.ids)}); add it to {KEYS_VARIABLE} or {KEYS_FILE_VARIABLE}",
        )

    @classmethod
    def parse(cls, text: str, *, source: str = KEYS_VARIABLE) -> Keyring:
        """`id:base64key` entries, separated by commas or new lines; `#` starts a comment."""
        keys: list[tuple[str, bytes]] = []
        for line in text.splitlines():
            for entry in line.split("#", 1)[0].split(","):
                entry = entry.strip()
                if not entry:
                    continue
                key_id, colon, encoded = entry.partition(":")
                if not colon:
                    raise KeyringError(f"{source}: an entry is not id:base64key")
                try:
                    key = base64.b64decode(encoded.strip(), validate=True)
                except binascii.Error:
                    raise KeyringError(
                        f"{source}: key {key_id.strip()!r} is not valid base64"
                    ) from None
                keys.append((key_id.strip(), key))
        if not keys:
            raise KeyringError(f"{source} is set but holds no keys")
        return cls(tuple(keys))


def keyring_from_env(env: Mapping[str, str] | None = None) -> Keyring | None:
    """The configured keyring, or None when encryption is off (neither variable set).

    A variable that is set but wrong raises KeyringError: a typo must not turn encryption off.
    """
    env = os.environ if env is None else env
    inline = env.get(KEYS_VARIABLE, "")
    path = env.get(KEYS_FILE_VARIABLE, "")
    if inline and path:
        raise KeyringError(f"set {KEYS_VARIABLE} or {KEYS_FILE_VARIABLE}, not both")
    if inline:
        return Keyring.parse(inline)
    if path:
        return _read_key_file(Path(path))
    if KEYS_VARIABLE in env or KEYS_FILE_VARIABLE in env:
        raise KeyringError(f"{KEYS_VARIABLE} / {KEYS_FILE_VARIABLE} is set but empty")
    return None


def _read_key_file(path: Path) -> Keyring:
    try:
        text = path.read_text()
        mode = path.stat().st_mode
    except OSError as err:
        raise KeyringError(f"{KEYS_FILE_VARIABLE}: cannot read {path}: {err.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("encryption key file %s is readable by others: chmod 600 it", path)
    return Keyring.parse(text, source=str(path))


def new_key_entry(key_id: str | None = None) -> str:
    """A fresh `id:base64key` entry; the default id sorts by creation date."""
    key_id = key_id or f"{time.strftime('%Y%m%d', time.gmtime())}-{secrets.token_hex(3)}"
    key = secrets.token_bytes(KEY_BYTES)
    Keyring(((key_id, key),))  # the same checks a configured key gets
    return f"{key_id}:{base64.b64encode(key).decode()}"
