"""TLS for the gateway's port, and for the workers' relay connections to it.

The gateway serves TLS with `--gateway-tls-cert` / `--gateway-tls-key` and, with
`--gateway-tls-client-ca`, requires every caller to present a certificate that CA signed. Workers
publish tokens to the same port, so they connect with TLS too when it is configured for them:
`ENGRAM_RELAY_TLS_CA` (the CA that signed the gateways' certificates; `ENGRAM_RELAY_TLS=1` for the
system's roots) and, for gateways that require client certificates, `ENGRAM_RELAY_TLS_CERT` /
`ENGRAM_RELAY_TLS_KEY`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

RELAY_CA = "ENGRAM_RELAY_TLS_CA"
RELAY_CERT = "ENGRAM_RELAY_TLS_CERT"
RELAY_KEY = "ENGRAM_RELAY_TLS_KEY"
RELAY_TLS = "ENGRAM_RELAY_TLS"
RELAY_SERVER_NAME = "ENGRAM_RELAY_TLS_SERVER_NAME"


@dataclass(frozen=True)
class ServerTLS:
    cert: Path
    key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        for path in (self.cert, self.key, self.client_ca):
            if path is not None and not path.is_file():
                raise SystemExit(f"TLS file {path} does not exist")
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.client_ca.read_bytes() if self.client_ca else None,
            require_client_auth=self.client_ca is not None,
        )


def server_tls(cert: str, key: str, client_ca: str) -> ServerTLS | None:
    """The gateway's TLS from its flags; None for plaintext. A key without a certificate (or the
    reverse) is a mistake, not plaintext."""
    if not cert and not key:
        if client_ca:
            raise SystemExit(
                "--gateway-tls-client-ca needs --gateway-tls-cert and --gateway-tls-key"
            )
        return None
    if not (cert and key):
        raise SystemExit("TLS needs both --gateway-tls-cert and --gateway-tls-key")
    return ServerTLS(Path(cert), Path(key), Path(client_ca) if client_ca else None)


def relay_server_name(env: Mapping[str, str] | None = None) -> str:
    """The name workers check the relay's certificate against, when it is not the host they
    dial: replicas of one gateway service advertise their own host names, and share a
    certificate made out to the service's name."""
    env = os.environ if env is None else env
    return env.get(RELAY_SERVER_NAME, "").strip()


def relay_credentials(env: Mapping[str, str] | None = None) -> grpc.ChannelCredentials | None:
    """How workers reach gateways' relay; None for plaintext."""
    env = os.environ if env is None else env
    ca, cert, key = env.get(RELAY_CA, ""), env.get(RELAY_CERT, ""), env.get(RELAY_KEY, "")
    wanted = env.get(RELAY_TLS, "").strip().lower() in ("1", "true", "yes", "on")
    if not (ca or cert or wanted):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes() if ca else None,
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )


def default_relay_environment(tls: ServerTLS) -> dict[str, str]:
    """For `engram dev`, whose own worker publishes to its own gateway: trust the gateway's
    certificate (self-signed, as in development; with a client CA, that CA, which is then expected
    to have signed it) and present the gateway's own certificate when client certificates are
    required. Variables already set win."""
    defaults = {RELAY_CA: str(tls.client_ca or tls.cert)}
    if tls.client_ca is not None:
        defaults |= {RELAY_CERT: str(tls.cert), RELAY_KEY: str(tls.key)}
    return {k: v for k, v in defaults.items() if not os.environ.get(k)}
