"""Everything a gateway needs to serve safely, built from its flags: the pieces server.py wires.

`GatewaySecurity.prepare` runs before the port opens and refuses unsafe starts (a network address
without keys, keys without a relay secret); `interceptors`, `relay_guard` and `add_port` are what
the gRPC server is built with.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import grpc
from temporalio.client import Client

from engram.auth import exposure, relay_secret
from engram.auth.interceptor import AuthInterceptor
from engram.auth.key_store import KeyStore
from engram.auth.keyring import KeyRing
from engram.auth.limits import Limits, RateLimiter, StreamSlots
from engram.auth.relay_secret import RelayGuard
from engram.gateway.tenancy import AgentAccess
from engram.gateway.tls import ServerTLS, default_relay_environment, server_tls

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SecuritySettings:
    insecure_no_auth: bool = False
    limits: Limits = field(default_factory=Limits)
    tls: ServerTLS | None = None

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, *, short_tls_names: bool = False) -> None:
        """The gateway's security flags. `short_tls_names` also accepts --tls-cert, --tls-key and
        --tls-client-ca (for `engram dev`, which has no Temporal TLS flags to clash with)."""
        env = os.environ.get
        group = parser.add_argument_group("security")
        group.add_argument(
            "--insecure-no-auth",
            action="store_true",
            default=env("ENGRAM_INSECURE_NO_AUTH", "").lower() in ("1", "true", "yes", "on"),
            help="serve a non-loopback address without API keys (ENGRAM_INSECURE_NO_AUTH)",
        )
        for name, variable, what in (
            ("cert", "ENGRAM_GATEWAY_TLS_CERT", "serve TLS with this certificate (PEM)"),
            ("key", "ENGRAM_GATEWAY_TLS_KEY", "the certificate's private key (PEM)"),
            (
                "client-ca",
                "ENGRAM_GATEWAY_TLS_CLIENT_CA",
                "require client certificates this CA signed",
            ),
        ):
            names = [f"--gateway-tls-{name}"] + ([f"--tls-{name}"] if short_tls_names else [])
            group.add_argument(*names, default=env(variable, ""), help=f"{what} ({variable})")
        Limits.add_arguments(parser)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SecuritySettings:
        return cls(
            insecure_no_auth=args.insecure_no_auth,
            limits=Limits.from_args(args),
            tls=server_tls(args.gateway_tls_cert, args.gateway_tls_key, args.gateway_tls_client_ca),
        )


class GatewaySecurity:
    def __init__(self, store: KeyStore, settings: SecuritySettings | None = None) -> None:
        self.settings = settings or SecuritySettings()
        self.keyring = KeyRing(store)
        self.keyring.load()
        # One rate and one count of open streams per key, whichever API (gRPC or HTTP) it calls.
        limits = self.settings.limits
        self.rate = RateLimiter(limits.rate, limits.burst)
        self.chat_streams = StreamSlots(limits.chat_streams)

    def prepare(self, host: str) -> None:
        """Refuse (SystemExit, with the reason) to serve `host` unsafely; log what is enforced."""
        refusal = exposure.refusal(host, self.keyring.has_keys, self.settings.insecure_no_auth)
        if refusal is not None:
            raise SystemExit(refusal)
        if not exposure.is_loopback(host) and not self.keyring.has_keys:
            log.warning(
                "--insecure-no-auth: serving %s WITHOUT API keys; anyone who can reach the port "
                "can read, chat with and delete every agent",
                host,
            )
        elif not exposure.is_loopback(host):
            # Keys were there at start: never fall back to open, even if the table is emptied.
            self.keyring.always_required = True
        if self.keyring.required_now() and not relay_secret.configured():
            raise SystemExit(
                f"API keys are required but {relay_secret.ENV} is not set: set the same secret "
                "on every worker and gateway, so that only workers can use the internal token relay"
            )
        if self.keyring.required_now():
            log.info("API keys required (%d in the store)", self.keyring.key_count)
        else:
            log.info("no API keys in the store: open to local callers (engram keys create ...)")
        if self.settings.tls is None and not exposure.is_loopback(host):
            log.warning("serving %s without TLS: keys and replies cross the network in clear", host)

    def interceptors(self) -> list[grpc.aio.ServerInterceptor[Any, Any]]:
        return [AuthInterceptor(self.keyring, self.settings.limits, self.rate, self.chat_streams)]

    def relay_guard(self) -> RelayGuard:
        return RelayGuard(relay_secret.configured(), self.keyring.required_now)

    def access(self, client: Client) -> AgentAccess:
        return AgentAccess(client, self.settings.limits.agents_per_tenant)

    def add_port(self, server: grpc.aio.Server, listen: str) -> int:
        """Open `listen` with TLS if configured; the port bound (0 if it could not be)."""
        tls = self.settings.tls
        if tls is None:
            return server.add_insecure_port(listen)
        return server.add_secure_port(listen, tls.credentials())


def for_gateway(store: KeyStore, args: argparse.Namespace) -> GatewaySecurity:
    """`engram gateway`'s security from its flags, checked against where it listens."""
    security = GatewaySecurity(store, SecuritySettings.from_args(args))
    security.prepare(args.host)
    return security


def for_dev(store: KeyStore, args: argparse.Namespace) -> GatewaySecurity:
    """`engram dev`'s: as a gateway's, and its own worker (this process) is given a fresh relay
    secret and, with TLS, what it needs to reach its own gateway. Call before building the
    worker, which reads them."""
    relay_secret.ensure_configured()
    security = GatewaySecurity(store, SecuritySettings.from_args(args))
    if security.settings.tls is not None:
        os.environ.update(default_relay_environment(security.settings.tls))
    security.prepare(args.host)
    return security
