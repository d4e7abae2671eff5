"""`engram encryption-key new`, `engram codec-server`, and the codec server of `engram dev`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import signal
from collections.abc import Callable, Coroutine
from typing import Any

from engram.codec.claim_check import BlobStore
from engram.codec.keyring import Keyring, KeyringError, keyring_from_env, new_key_entry
from engram.codec.server import (
    DEFAULT_ORIGIN,
    DEFAULT_PORT,
    HOSTS_VARIABLE,
    TOKEN_VARIABLE,
    CodecServer,
    CodecServerSettings,
    origins,
)

log = logging.getLogger("engram")

Runner = Callable[[argparse.Namespace], Coroutine[Any, Any, None]]


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    key = commands.add_parser("encryption-key", help="encryption keys for payloads and transcripts")
    actions = key.add_subparsers(dest="key_action", required=True)
    new = actions.add_parser(
        "new", help="print a new key as id:base64 (append it to ENGRAM_ENCRYPTION_KEYS)"
    )
    new.add_argument("--id", default=None, help="the key's id (default: today's date + random)")

    env = os.environ.get
    server = commands.add_parser(
        "codec-server",
        help="decode encrypted payloads for the Temporal Web UI and CLI "
        f"(token in {TOKEN_VARIABLE})",
    )
    server.add_argument(
        "--host",
        default=env("ENGRAM_CODEC_SERVER_HOST", "127.0.0.1"),
        help="interface to listen on (ENGRAM_CODEC_SERVER_HOST; default 127.0.0.1; plain HTTP, "
        "so put TLS in front of it beyond loopback)",
    )
    server.add_argument(
        "--port",
        type=int,
        default=int(env("ENGRAM_CODEC_SERVER_PORT", str(DEFAULT_PORT))),
        help=f"(ENGRAM_CODEC_SERVER_PORT; default {DEFAULT_PORT})",
    )
    server.add_argument(
        "--cors-origin",
        action="append",
        default=None,
        help="the Web UI's origin, repeatable or comma-separated "
        f"(ENGRAM_CODEC_SERVER_ORIGINS; default {DEFAULT_ORIGIN})",
    )
    server.add_argument(
        "--transcript-db",
        default=env("ENGRAM_TRANSCRIPT_DB"),
        help="the workers' transcript store (a SQLite path or postgresql:// URL): payloads moved "
        "out of history are shown from it (ENGRAM_TRANSCRIPT_DB)",
    )
    server.add_argument(
        "--allowed-host",
        action="append",
        default=[h for h in env(HOSTS_VARIABLE, "").split(",") if h.strip()],
        help="a host name browsers reach this server by, repeatable (ENGRAM_CODEC_SERVER_HOSTS: "
        "comma-separated); loopback names and --host are always allowed, any other Host is "
        "refused (DNS rebinding)",
    )


async def run_encryption_key(args: argparse.Namespace) -> None:
    try:
        print(new_key_entry(args.id), flush=True)
    except KeyringError as err:
        raise SystemExit(str(err)) from None


async def run_codec_server(args: argparse.Namespace) -> None:
    keyring = require_keyring()
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        raise SystemExit(f"set {TOKEN_VARIABLE}: the codec server never serves unauthenticated")
    allowed = origins(args.cors_origin or _default_origins())
    settings = CodecServerSettings(token, allowed, frozenset(args.allowed_host))
    blobs: BlobStore | None = None
    if args.transcript_db:
        from engram.codec.encrypted_store import encrypted_store
        from engram.transcripts import open_transcript_store

        blobs = encrypted_store(open_transcript_store(args.transcript_db), keyring)
    server = CodecServer(keyring, settings, args.host, args.port, blobs)
    server.start()
    log.info(
        "codec server on http://%s:%d (keys %s; origins %s)",
        args.host,
        server.port,
        ", ".join(keyring.ids),
        ", ".join(sorted(allowed)),
    )
    try:
        await _until_stopped()
    finally:
        await asyncio.to_thread(server.close)


RUNNERS: dict[str, Runner] = {
    "encryption-key": run_encryption_key,
    "codec-server": run_codec_server,
}


def configured_keyring() -> Keyring | None:
    """The keyring from the environment, None when encryption is off; exits when it is wrong."""
    try:
        return keyring_from_env()
    except KeyringError as err:
        raise SystemExit(f"encryption keys: {err}") from None


def require_keyring() -> Keyring:
    """The configured keyring; exits with the reason if there is none or it is wrong."""
    keyring = configured_keyring()
    if keyring is None:
        raise SystemExit("set ENGRAM_ENCRYPTION_KEYS or ENGRAM_ENCRYPTION_KEYS_FILE")
    return keyring


def start_dev_codec_server(
    keyring: Keyring | None, ui_port: int, port: int = 0, blobs: BlobStore | None = None
) -> tuple[CodecServer, str]:
    """A codec server for `engram dev`'s Web UI, on loopback, and the endpoint to give the UI.

    The dev Web UI cannot send an Authorization header, so its endpoint carries a token made for
    this run in its path.
    """
    token = secrets.token_urlsafe(24)
    allowed = frozenset({f"http://localhost:{ui_port}", f"http://127.0.0.1:{ui_port}"})
    settings = CodecServerSettings(token, allowed)
    server = CodecServer(keyring, settings, "127.0.0.1", port, blobs).start()
    return server, f"http://127.0.0.1:{server.port}/{token}"


def _default_origins() -> list[str]:
    return [os.environ.get("ENGRAM_CODEC_SERVER_ORIGINS") or DEFAULT_ORIGIN]


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
