"""Connecting to Temporal: the embedded dev server, a self-hosted cluster or Temporal Cloud.

The base is Temporal's own client configuration (`temporalio.envconfig`): a TOML profile
(`TEMPORAL_CONFIG_FILE`, `TEMPORAL_PROFILE`, default `~/.config/temporalio/temporal.toml`) and the
standard variables (`TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, `TEMPORAL_TLS*`),
so a machine already set up for the `temporal` CLI needs nothing more. Engram's flags and its
`ENGRAM_TEMPORAL_*` variables, when given, override them, flags first.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS, DataSource
from temporalio.service import TLSConfig

from engram.codec.payload_codec import PLAIN

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"
API_KEY_VARIABLE = "ENGRAM_TEMPORAL_API_KEY"

# PEM material: a file to read when connecting, or the contents themselves (a profile's `data`).
PemSource = Path | bytes


@dataclass(frozen=True)
class TemporalSettings:
    """Where and how to reach Temporal, resolved from every source; nothing is connected yet."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    # None: TLS when an API key or any TLS material is set; True / False: as chosen.
    tls: bool | None = None
    tls_cert: PemSource | None = None
    tls_key: PemSource | None = field(default=None, repr=False)
    tls_ca: PemSource | None = None
    tls_server_name: str = ""
    api_key: str = field(default="", repr=False)
    # A profile's grpc_meta: headers on every call, which may carry credentials too.
    rpc_metadata: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        # Defaults are None so that resolve() can tell a flag given from one left out.
        group = parser.add_argument_group(
            "Temporal",
            "Each falls back to ENGRAM_TEMPORAL_*, then to Temporal's own configuration "
            "(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, "
            "TEMPORAL_PROFILE, TEMPORAL_CONFIG_FILE).",
        )
        group.add_argument(
            "--temporal-address", help=f"host:port (ENGRAM_TEMPORAL_ADDRESS; {DEFAULT_ADDRESS})"
        )
        group.add_argument(
            "--namespace", help=f"(ENGRAM_TEMPORAL_NAMESPACE; default {DEFAULT_NAMESPACE})"
        )
        group.add_argument(
            "--tls",
            action=argparse.BooleanOptionalAction,
            help="use TLS (ENGRAM_TEMPORAL_TLS; implied by a certificate or an API key)",
        )
        group.add_argument("--tls-cert", help="client certificate file (ENGRAM_TEMPORAL_TLS_CERT)")
        group.add_argument("--tls-key", help="client key file (ENGRAM_TEMPORAL_TLS_KEY)")
        group.add_argument("--tls-ca", help="server CA certificate file (ENGRAM_TEMPORAL_TLS_CA)")
        # No flag for the key itself: flags show up in process listings.
        group.add_argument(
            "--temporal-api-key-env",
            metavar="VAR",
            help="environment variable holding a Temporal Cloud API key "
            f"(default {API_KEY_VARIABLE}, then TEMPORAL_API_KEY)",
        )

    @classmethod
    def from_args(
        cls, args: argparse.Namespace, env: Mapping[str, str] | None = None
    ) -> TemporalSettings:
        return cls.resolve(
            address=args.temporal_address,
            namespace=args.namespace,
            tls=args.tls,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            tls_ca=args.tls_ca,
            api_key_env=args.temporal_api_key_env,
            env=env,
        )

    @classmethod
    def resolve(
        cls,
        *,
        address: str | None = None,
        namespace: str | None = None,
        tls: bool | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        tls_ca: str | None = None,
        api_key_env: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> TemporalSettings:
        """Flags (the arguments) over ENGRAM_TEMPORAL_* over Temporal's profile and variables."""
        env = os.environ if env is None else env
        try:
            profile = ClientConfigProfile.load(override_env_vars=dict(env))
        except RuntimeError as err:
            raise SystemExit(f"Temporal client configuration: {err}") from None
        # A profile's [tls] section (or TEMPORAL_TLS*) means TLS unless it says `disabled`.
        profile_tls = profile.tls or ClientConfigTLS()
        profile_wants_tls = None if profile.tls is None else profile_tls.disabled is not True

        def given(flag: str | None, variable: str) -> str | None:
            return flag or env.get(variable) or None

        cert = given(tls_cert, "ENGRAM_TEMPORAL_TLS_CERT")
        key = given(tls_key, "ENGRAM_TEMPORAL_TLS_KEY")
        ca = given(tls_ca, "ENGRAM_TEMPORAL_TLS_CA")
        engram_tls = tls if tls is not None else _flag(env, "ENGRAM_TEMPORAL_TLS")
        chosen_tls: bool | None
        if engram_tls is not None:
            chosen_tls = engram_tls
        elif cert or ca:
            chosen_tls = None  # Engram's own certificates imply TLS, whatever a profile says
        else:
            chosen_tls = profile_wants_tls
        return cls(
            address=given(address, "ENGRAM_TEMPORAL_ADDRESS") or profile.address or DEFAULT_ADDRESS,
            namespace=given(namespace, "ENGRAM_TEMPORAL_NAMESPACE")
            or profile.namespace
            or DEFAULT_NAMESPACE,
            tls=chosen_tls,
            tls_cert=Path(cert) if cert else _pem(profile_tls.client_cert),
            tls_key=Path(key) if key else _pem(profile_tls.client_private_key),
            tls_ca=Path(ca) if ca else _pem(profile_tls.server_root_ca_cert),
            tls_server_name=profile_tls.server_name or "",
            api_key=env.get(api_key_env or API_KEY_VARIABLE) or profile.api_key or "",
            rpc_metadata=dict(profile.grpc_meta),
        )

    def tls_config(self) -> bool | TLSConfig:
        """What `Client.connect` is given as `tls`."""
        material = (self.tls_cert, self.tls_key, self.tls_ca)
        wanted = self.tls
        if wanted is None:
            wanted = bool(self.api_key or self.tls_server_name or any(material))
        if not wanted:
            return False
        if not (any(material) or self.tls_server_name):
            return True
        return TLSConfig(
            client_cert=_read(self.tls_cert),
            client_private_key=_read(self.tls_key),
            server_root_ca_cert=_read(self.tls_ca),
            domain=self.tls_server_name or None,
        )

    async def connect(
        self,
        data_converter: DataConverter = PLAIN,
        interceptors: Sequence[Interceptor] = (),
    ) -> Client:
        """Connect; `data_converter` encrypts payloads when encryption is on (engram.codec),
        `interceptors` trace calls when tracing is on (engram.observability.tracing)."""
        return await Client.connect(
            self.address,
            namespace=self.namespace,
            tls=self.tls_config(),
            api_key=self.api_key or None,
            rpc_metadata=self.rpc_metadata,
            data_converter=data_converter,
            interceptors=interceptors,
        )


def _flag(env: Mapping[str, str], variable: str) -> bool | None:
    """A yes/no variable; unset or empty means not given."""
    value = env.get(variable, "").strip().lower()
    if not value:
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{variable} must be true or false, not {value!r}")


def _pem(source: DataSource | None) -> PemSource | None:
    if isinstance(source, str):
        return source.encode()
    return source


def _read(source: PemSource | None) -> bytes | None:
    if isinstance(source, Path):
        return source.read_bytes()
    return source
