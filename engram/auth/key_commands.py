"""`engram keys create | list | revoke`: managing API keys in the store the gateways read.

Whoever can write the store (the SQLite file of `engram dev`, or the PostgreSQL database of a
deployment) manages keys; gateways see a new or revoked key within a few seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engram.auth import keys
from engram.auth.key_store import KeyStore
from engram.auth.records import TENANT_PATTERN, Role


def add_arguments(parser: argparse.ArgumentParser) -> Any:
    """`engram keys`' actions; returns their subparsers, for the caller to add more to (each
    with `add_store_arguments`)."""
    actions = parser.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it (once)")
    create.add_argument("--tenant", required=True, help="the tenant whose agents the key uses")
    create.add_argument("--role", choices=[r.value for r in Role], default=Role.MEMBER.value)
    create.add_argument(
        "--expires", default="never", help="lifetime such as 90d, 12h, 30m, 2w, or never"
    )
    listing = actions.add_parser("list", help="every key: id, tenant, role, state, dates")
    revoke = actions.add_parser("revoke", help="refuse a key from now on (within seconds)")
    revoke.add_argument("key_id", metavar="ID")
    for sub in (create, listing, revoke):
        add_store_arguments(sub)
    return actions


def add_store_arguments(sub: argparse.ArgumentParser) -> None:
    """Where the store is: the flags `store_location` reads."""
    sub.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("ENGRAM_DATA_DIR", ".engram")),
        help="the engine's data directory (engram dev), for its transcripts.db",
    )
    sub.add_argument(
        "--transcript-db",
        default=os.environ.get("ENGRAM_TRANSCRIPT_DB", ""),
        help="the store the gateways use: a PostgreSQL URL or a SQLite file "
        "(default <data dir>/transcripts.db)",
    )


def store_location(args: argparse.Namespace) -> str | Path:
    """The store the keys are in, from the flags `add_arguments` defined."""
    location: str | Path = args.transcript_db or args.data_dir / "transcripts.db"
    return location


def run(args: argparse.Namespace, store: KeyStore) -> int:
    """Run the action on `store` (opened at `store_location(args)`; the caller closes it)."""
    if args.action == "create":
        return _create(store, args)
    if args.action == "list":
        return _list(store)
    return _revoke(store, args.key_id)


def _create(store: KeyStore, args: argparse.Namespace) -> int:
    if not TENANT_PATTERN.match(args.tenant):
        print(
            "error: a tenant is 1-64 letters, digits and ._- (starting with a letter or digit)",
            file=sys.stderr,
        )
        return 2
    try:
        lifetime = keys.parse_duration(args.expires)
    except ValueError as err:
        print(f"error: --expires: {err}", file=sys.stderr)
        return 2
    key, record = keys.new_key(args.tenant, Role(args.role), lifetime)
    store.add_api_key(record)
    expiry = "never expires" if record.expires_at is None else f"expires {_when(record.expires_at)}"
    print(f"Created API key {record.key_id} for tenant {record.tenant} ({record.role}); {expiry}.")
    print("Copy it now: it is not shown again, and the store keeps only a hash of it.")
    print("Clients send it as gRPC metadata 'authorization: Bearer <key>' or 'x-api-key: <key>'.")
    print(key, flush=True)
    return 0


def _list(store: KeyStore) -> int:
    records = store.api_keys()
    if not records:
        print("No API keys: gateways on localhost run open; others refuse to start.")
        return 0
    now = time.time()
    rows = [("ID", "TENANT", "ROLE", "STATE", "CREATED", "EXPIRES")]
    rows += [
        (
            r.key_id,
            r.tenant,
            str(r.role),
            r.state(now),
            _when(r.created_at),
            _when(r.expires_at) if r.expires_at is not None else "never",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _revoke(store: KeyStore, key_id: str) -> int:
    if not store.revoke_api_key(key_id, time.time()):
        known = {r.key_id for r in store.api_keys()}
        reason = "already revoked" if key_id in known else "no such key"
        print(f"error: cannot revoke {key_id}: {reason}", file=sys.stderr)
        return 1
    print(f"Revoked API key {key_id}; every gateway refuses it within a few seconds.")
    return 0


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
