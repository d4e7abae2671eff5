"""Connecting to Temporal: the embedded dev server, a self-hosted cluster or Temporal Cloud."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client
from temporalio.service import TLSConfig


@dataclass(frozen=True)
class TemporalSettings:
    address: str = "localhost:7233"
    namespace: str = "default"
    tls: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    api_key: str = field(default="", repr=False)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        env = os.environ.get
        group = parser.add_argument_group("Temporal")
        group.add_argument(
            "--temporal-address", default=env("ENGRAM_TEMPORAL_ADDRESS", "localhost:7233")
        )
        group.add_argument("--namespace", default=env("ENGRAM_TEMPORAL_NAMESPACE", "default"))
        group.add_argument(
            "--tls",
            action="store_true",
            default=bool(env("ENGRAM_TEMPORAL_TLS")),
            help="use TLS (implied by --tls-cert or an API key)",
        )
        group.add_argument("--tls-cert", default=env("ENGRAM_TEMPORAL_TLS_CERT", ""))
        group.add_argument("--tls-key", default=env("ENGRAM_TEMPORAL_TLS_KEY", ""))
        group.add_argument("--tls-ca", default=env("ENGRAM_TEMPORAL_TLS_CA", ""))
        # No flag for the key itself: flags show up in process listings.
        group.add_argument(
            "--temporal-api-key-env",
            default="ENGRAM_TEMPORAL_API_KEY",
            metavar="VAR",
            help="environment variable holding a Temporal Cloud API key",
        )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> TemporalSettings:
        return cls(
            address=args.temporal_address,
            namespace=args.namespace,
            tls=args.tls,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
            api_key=os.environ.get(args.temporal_api_key_env, ""),
        )

    async def connect(self) -> Client:
        tls: bool | TLSConfig = False
        if self.tls_cert or self.tls_ca:
            tls = TLSConfig(
                client_cert=_read(self.tls_cert),
                client_private_key=_read(self.tls_key),
                server_root_ca_cert=_read(self.tls_ca),
            )
        elif self.tls or self.api_key:
            tls = True
        return await Client.connect(
            self.address, namespace=self.namespace, tls=tls, api_key=self.api_key or None
        )


def _read(path: str) -> bytes | None:
    return Path(path).read_bytes() if path else None
