"""Engram's edges on standard pieces: Temporal's client configuration, the gRPC health service.

The settings tests resolve configuration only, nothing is connected. The health test starts a real
gateway in process against a real Temporal dev server, kills Temporal with SIGKILL and starts it
again on the same SQLite file and port, watching the gateway's standard health service (and
`engram probe gateway`) follow.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from temporalio.client import Client
from temporalio.service import TLSConfig

from engram.cli import connect
from engram.dev_server import start_dev_server
from engram.gateway.agent_service import GatewaySettings
from engram.gateway.health import AGENT_SERVICE
from engram.gateway.server import start_gateway
from engram.processes import free_port, wait_for_port
from engram.temporal_connection import TemporalSettings
from engram.transcripts import open_transcript_store

SECRET = "temporal-api-key-2c7e19"

PROFILES = """
[profile.default]
address = "file.example:7233"
namespace = "file-ns"

[profile.cloud]
address = "cloud.example:7233"
namespace = "cloud-ns"
api_key = "{secret}"

[profile.cloud.tls]
server_name = "sni.example"
server_ca_cert_data = "PEM-FROM-PROFILE"

[profile.cloud.grpc_meta]
x-team = "agents"
"""


# --- Temporal connection settings --------------------------------------------------------------


def settings(argv: list[str], env: Mapping[str, str]) -> TemporalSettings:
    parser = argparse.ArgumentParser()
    TemporalSettings.add_arguments(parser)
    return TemporalSettings.from_args(parser.parse_args(argv), env)


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    path = tmp_path / "temporal.toml"
    path.write_text(PROFILES.format(secret=SECRET))
    return path


def test_defaults_are_the_local_dev_server(tmp_path: Path) -> None:
    # A config file that does not exist, so that no profile in the home directory is read.
    resolved = settings([], {"TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml")})
    assert (resolved.address, resolved.namespace) == ("localhost:7233", "default")
    assert resolved.api_key == "" and resolved.tls_config() is False


def test_the_profile_file_is_the_base(profiles: Path) -> None:
    resolved = settings([], {"TEMPORAL_CONFIG_FILE": str(profiles)})
    assert (resolved.address, resolved.namespace) == (
        "file.example:7233",
        "file-ns",
    )
    assert resolved.tls_config() is False


def test_a_named_profile_brings_its_key_tls_and_headers(profiles: Path) -> None:
    resolved = settings([], {"TEMPORAL_CONFIG_FILE": str(profiles), "TEMPORAL_PROFILE": "cloud"})
    assert (resolved.address, resolved.namespace) == ("cloud.example:7233", "cloud-ns")
    assert resolved.api_key == SECRET
    assert dict(resolved.rpc_metadata) == {"x-team": "agents"}
    tls = resolved.tls_config()
    assert isinstance(tls, TLSConfig)
    assert (tls.domain, tls.server_root_ca_cert) == ("sni.example", b"PEM-FROM-PROFILE")


def test_temporal_variables_over_the_file_engram_variables_over_both_flags_over_all(
    profiles: Path,
) -> None:
    env = {
        "TEMPORAL_CONFIG_FILE": str(profiles),
        "TEMPORAL_ADDRESS": "tvar.example:7233",
        "TEMPORAL_NAMESPACE": "tvar-ns",
    }
    resolved = settings([], env)
    assert (resolved.address, resolved.namespace) == (
        "tvar.example:7233",
        "tvar-ns",
    )

    env |= {"ENGRAM_TEMPORAL_ADDRESS": "engram-var.example:7233"}
    resolved = settings([], env)
    assert (resolved.address, resolved.namespace) == ("engram-var.example:7233", "tvar-ns")

    resolved = settings(["--temporal-address", "flag.example:7233", "--namespace", "flag-ns"], env)
    assert (resolved.address, resolved.namespace) == ("flag.example:7233", "flag-ns")


def test_api_keys_in_order_and_never_shown(profiles: Path) -> None:
    base = {"TEMPORAL_CONFIG_FILE": str(profiles), "TEMPORAL_PROFILE": "cloud"}
    assert settings([], base | {"TEMPORAL_API_KEY": "from-temporal-var"}).api_key == (
        "from-temporal-var"
    )
    env = base | {"TEMPORAL_API_KEY": "from-temporal-var", "ENGRAM_TEMPORAL_API_KEY": "engram"}
    assert settings([], env).api_key == "engram"
    named = settings(["--temporal-api-key-env", "MY_KEY"], env | {"MY_KEY": "mine"})
    assert named.api_key == "mine"
    for resolved in (named, settings([], base)):
        assert "mine" not in repr(resolved) and SECRET not in repr(resolved)
        assert "x-team" not in repr(resolved)  # headers may carry credentials too
    # An API key alone means TLS, as Temporal Cloud requires.
    keyed = settings([], {"TEMPORAL_CONFIG_FILE": "/nonexistent", "TEMPORAL_API_KEY": "k"})
    assert keyed.tls_config() is True


def test_engram_tls_settings_override_the_profile(profiles: Path, tmp_path: Path) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(profiles), "TEMPORAL_PROFILE": "cloud"}
    assert settings(["--no-tls"], env).tls_config() is False
    assert settings([], env | {"ENGRAM_TEMPORAL_TLS": "false"}).tls_config() is False
    assert settings(["--tls"], env | {"ENGRAM_TEMPORAL_TLS": "false"}).tls_config() is not False

    ca = tmp_path / "ca.pem"
    ca.write_bytes(b"PEM-FROM-FILE")
    # Engram's certificate files replace the profile's, and imply TLS even where it said no.
    off = env | {"TEMPORAL_TLS": "false"}
    tls = settings(["--tls-ca", str(ca)], off).tls_config()
    assert isinstance(tls, TLSConfig) and tls.server_root_ca_cert == b"PEM-FROM-FILE"
    tls = settings([], off | {"ENGRAM_TEMPORAL_TLS_CA": str(ca)}).tls_config()
    assert isinstance(tls, TLSConfig) and tls.server_root_ca_cert == b"PEM-FROM-FILE"


def test_bad_configuration_is_refused_before_connecting(profiles: Path) -> None:
    env = {"TEMPORAL_CONFIG_FILE": str(profiles), "TEMPORAL_PROFILE": "missing"}
    with pytest.raises(SystemExit, match="missing"):
        settings([], env)
    with pytest.raises(SystemExit, match="ENGRAM_TEMPORAL_TLS"):
        settings([], {"TEMPORAL_CONFIG_FILE": str(profiles), "ENGRAM_TEMPORAL_TLS": "maybe"})


# --- the gateway's health service ---------------------------------------------------------------


@dataclass
class Temporal:
    """A Temporal dev server on a fixed port and SQLite file, to kill and start again."""

    data_dir: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.process = start_dev_server(self.data_dir, self.port, free_port())
        await wait_for_port("127.0.0.1", self.port, self.process, timeout=60)

    async def client(self) -> Client:
        """A client, once the server answers: its port opens before its frontend is healthy, so
        this connects as Engram's own parts do."""
        return await connect(TemporalSettings(address=f"127.0.0.1:{self.port}"))

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
async def temporal(tmp_path: Path) -> AsyncIterator[Temporal]:
    server = Temporal(tmp_path, free_port())
    await server.start()
    yield server
    server.stop()


async def health_of(channel: grpc.aio.Channel, service: str) -> str:
    stub = health_pb2_grpc.HealthStub(channel)
    response = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    name: str = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
    return name


async def becomes(channel: grpc.aio.Channel, status: str, within: float) -> float:
    """Seconds until both "" and AgentService report `status`; fails after `within`."""
    started = time.monotonic()
    while True:
        now = [await health_of(channel, s) for s in ("", AGENT_SERVICE)]
        if now == [status, status]:
            return time.monotonic() - started
        assert time.monotonic() - started < within, f"still {now}, not {status}"
        await asyncio.sleep(0.1)


async def probe_exit_code(address: str) -> int:
    # A separate process, as docker-compose runs it; awaited, so this loop keeps serving.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "engram.cli",
        "probe",
        "gateway",
        "--address",
        address,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await process.wait()


@pytest.mark.chaos
async def test_health_follows_temporal(temporal: Temporal, tmp_path: Path) -> None:
    client = await temporal.client()
    store = open_transcript_store(tmp_path / "transcripts.db")
    port = free_port()
    address = f"127.0.0.1:{port}"
    server = await start_gateway(client, address, GatewaySettings(address), store)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            # Checked before the server started: SERVING from the first call.
            assert await health_of(channel, AGENT_SERVICE) == "SERVING"
            assert await health_of(channel, "") == "SERVING"
            assert await probe_exit_code(address) == 0

            temporal.kill()
            down = await becomes(channel, "NOT_SERVING", within=8)
            assert await probe_exit_code(address) != 0

            await temporal.start()  # same SQLite file, same port
            up = await becomes(channel, "SERVING", within=20)
            assert await probe_exit_code(address) == 0
            print(f"NOT_SERVING {down:.1f} s after the kill; SERVING {up:.1f} s after restart")
    finally:
        await server.stop(None)
        store.close()
    # The health watch lives and dies with the server.
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "engram-gateway-health"]
