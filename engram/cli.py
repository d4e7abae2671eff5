"""`engram dev | worker | gateway`: run the engine, or its parts against any Temporal."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from temporalio.client import Client

from engram import TASK_QUEUE, llm_settings, local_model, tool_settings
from engram.auth import key_commands
from engram.codec import commands as codec_commands
from engram.codec import data_converter, encrypted_store
from engram.codec.claim_check import BlobStore, with_claim_check
from engram.codec.commands import configured_keyring, start_dev_codec_server
from engram.dev_server import start_dev_server
from engram.embeddings import settings as embedding_settings
from engram.gateway import security as gateway_security
from engram.gateway.agent_service import GatewaySettings
from engram.gateway.server import GRACE_SECONDS, start_gateway
from engram.http.server import start_http
from engram.local_model import LocalModelServer
from engram.observability import options as observability
from engram.observability import tracing
from engram.prices import PriceTable
from engram.probe import add_arguments as add_probe_arguments
from engram.probe import probe_gateway, probe_worker
from engram.processes import free_port, wait_for_port
from engram.temporal_connection import TemporalSettings
from engram.terminal import add_commands as add_terminal_commands
from engram.terminal.workspace import add_commands as add_workspace_commands
from engram.tools.tool_set import DifferentTools
from engram.transcripts import TranscriptStore, budget_commands, open_transcript_store
from engram.worker import build_worker, deployment, ensure_search_attributes, join_workers

log = logging.getLogger("engram")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="engram", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="Temporal dev server + worker + gateway, one process")
    dev.add_argument(
        "--data-dir", type=Path, default=Path(os.environ.get("ENGRAM_DATA_DIR", ".engram"))
    )
    dev.add_argument("--temporal-port", type=int, default=7233)
    dev.add_argument("--ui-port", type=int, default=8233)
    _gateway_arguments(dev)
    _http_argument(dev)
    gateway_security.SecuritySettings.add_arguments(dev, short_tls_names=True)
    llm_settings.add_arguments(dev)
    embedding_settings.add_arguments(dev)
    tool_settings.add_arguments(dev)
    _transcript_argument(dev, default="")
    observability.add_arguments(dev)

    worker = commands.add_parser("worker", help="run agent workflows and LLM activities")
    TemporalSettings.add_arguments(worker)
    llm_settings.add_arguments(worker)
    embedding_settings.add_arguments(worker)
    tool_settings.add_arguments(worker)
    _transcript_argument(worker)
    _versioning_arguments(worker)
    observability.add_arguments(worker)

    gateway = commands.add_parser("gateway", help="serve the gRPC API")
    TemporalSettings.add_arguments(gateway)
    _gateway_arguments(gateway)
    gateway_security.SecuritySettings.add_arguments(gateway)
    _transcript_argument(gateway)
    observability.add_arguments(gateway)

    http = commands.add_parser(
        "http",
        help="serve the HTTP API (OpenAI-compatible and JSON), with the gRPC API it is built on",
    )
    TemporalSettings.add_arguments(http)
    _gateway_arguments(http)
    _http_argument(http)
    gateway_security.SecuritySettings.add_arguments(http)
    _transcript_argument(http)
    observability.add_arguments(http)

    key_actions = key_commands.add_arguments(
        commands.add_parser("keys", help="create, list and revoke API keys; tenants' budgets")
    )
    budget = key_actions.add_parser(
        "budget", help="tenants' daily budgets (USD per UTC day) and what each spent today"
    )
    budget_commands.add_arguments(budget)
    key_commands.add_store_arguments(budget)

    probe = commands.add_parser("probe", help="health check: exit 0 when the part is healthy")
    add_probe_arguments(probe)

    add_terminal_commands(commands)
    add_workspace_commands(commands)
    codec_commands.add_commands(commands)

    args = parser.parse_args(argv)
    if getattr(args, "terminal", None) is not None:
        # chat, agents, history, replay: clients of a gateway, with their own output.
        code = args.terminal(args)
        if argv is None and getattr(args, "talks_to_temporal", False):
            # A short-lived process with a Temporal client can abort in the interpreter's
            # shutdown ("PyGILState_Release", temporalio/sdk-python#300), which would turn a
            # command that did its work into a failed one. Nothing is left to clean up.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        raise SystemExit(code)
    observability.configure_logging(args)
    logging.getLogger("temporalio").setLevel(logging.WARNING)
    runners: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, None]]] = {
        "dev": run_dev,
        "worker": run_worker,
        "gateway": run_gateway,
        "http": run_http,
        "probe": run_probe,
        "keys": run_keys,
        **codec_commands.RUNNERS,
    }
    telemetry = observability.start(args)
    try:
        asyncio.run(runners[args.command](args))
    except KeyboardInterrupt:
        pass
    except DifferentTools as err:
        raise SystemExit(f"engram {args.command}: {err}") from None
    finally:
        telemetry.close()


def _gateway_arguments(parser: argparse.ArgumentParser) -> None:
    env = os.environ.get
    group = parser.add_argument_group("gateway")
    group.add_argument(
        "--host", default=env("ENGRAM_HOST", "localhost"), help="interface to listen on"
    )
    group.add_argument("--port", type=int, default=int(env("ENGRAM_PORT", "50051")))
    group.add_argument(
        "--advertise-address",
        default=env("ENGRAM_ADVERTISE_ADDRESS", ""),
        help="host:port at which workers reach this gateway (default: localhost:PORT); "
        "{hostname} is replaced by this machine's name",
    )
    group.add_argument(
        "--max-message-bytes",
        type=int,
        default=int(env("ENGRAM_MAX_MESSAGE_BYTES", str(64 * 1024))),
    )
    group.add_argument(
        "--max-attachment-bytes",
        type=int,
        default=int(env("ENGRAM_MAX_ATTACHMENT_BYTES", str(10 * 1024 * 1024))),
        help="the largest attachment a message may carry",
    )
    group.add_argument(
        "--max-attachments-bytes",
        type=int,
        default=int(env("ENGRAM_MAX_ATTACHMENTS_BYTES", str(10 * 1024 * 1024))),
        help="all of one message's attachments together",
    )
    group.add_argument(
        "--max-history-events",
        type=int,
        default=int(env("ENGRAM_MAX_HISTORY_EVENTS", "10000")),
        help="new agents continue-as-new past this many history events",
    )
    group.add_argument(
        "--default-model",
        default=env("ENGRAM_DEFAULT_MODEL", ""),
        help="model for agents created without one",
    )


def _versioning_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "Worker Deployment Versioning",
        "Both, or neither (an unversioned worker). Agents are pinned to the version they start "
        "on and move to the deployment's current version (`engram deployment set-current`) when "
        "they continue as new between turns.",
    )
    group.add_argument(
        "--deployment-name",
        default=os.environ.get("ENGRAM_DEPLOYMENT_NAME", ""),
        metavar="NAME",
        help="the Worker Deployment this worker belongs to (ENGRAM_DEPLOYMENT_NAME)",
    )
    group.add_argument(
        "--build-id",
        default=os.environ.get("ENGRAM_BUILD_ID", ""),
        metavar="ID",
        help="this worker's version within it, e.g. the release or image tag (ENGRAM_BUILD_ID)",
    )


def _http_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--http-port",
        type=int,
        default=int(os.environ.get("ENGRAM_HTTP_PORT", "8080")),
        help="port of the HTTP API, on the same --host as the gRPC port and under the same rule: "
        "a non-loopback host needs API keys (ENGRAM_HTTP_PORT)",
    )


def _transcript_argument(
    parser: argparse.ArgumentParser, default: str = ".engram/transcripts.db"
) -> None:
    parser.add_argument(
        "--transcript-db",
        default=os.environ.get("ENGRAM_TRANSCRIPT_DB", default),
        help="transcript store shared by workers and gateways: a PostgreSQL URL "
        "(postgresql://user:password@host/db) or a SQLite file "
        f"(default {default or '<data dir>/transcripts.db'})",
    )


def advertised(address: str, port: int) -> str:
    """Where workers reach this gateway. `{hostname}` stands for this machine's name, so that
    every replica of one gateway service advertises its own address, not the service's."""
    return (address or f"localhost:{port}").replace("{hostname}", socket.gethostname())


def _gateway_settings(args: argparse.Namespace) -> GatewaySettings:
    return GatewaySettings(
        advertise_address=advertised(args.advertise_address, args.port),
        max_message_bytes=args.max_message_bytes,
        max_attachment_bytes=args.max_attachment_bytes,
        max_attachments_bytes=args.max_attachments_bytes,
        default_model=args.default_model,
        max_history_events=args.max_history_events,
    )


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def connect(
    settings: TemporalSettings, timeout: float = 60.0, blobs: BlobStore | None = None
) -> Client:
    """Connect, waiting for a server that is still starting (as in docker compose). Workers and
    gateways pass their store's `blobs`, where large payloads are kept (codec.claim_check)."""
    deadline = asyncio.get_running_loop().time() + timeout
    converter = data_converter(configured_keyring())
    if blobs is not None:
        converter = with_claim_check(converter, blobs)
    while True:
        try:
            return await settings.connect(converter, tracing.client_interceptors())
        except RuntimeError as err:
            if asyncio.get_running_loop().time() > deadline:
                raise SystemExit(f"cannot reach Temporal at {settings.address}: {err}") from None
            await asyncio.sleep(0.5)


async def run_worker(args: argparse.Namespace) -> None:
    try:
        versioning = deployment(args.deployment_name, args.build_id)
    except ValueError as err:
        raise SystemExit(f"engram worker: {err}") from None
    temporal = TemporalSettings.from_args(args)
    store = _open_store(args.transcript_db)
    client = await connect(temporal, blobs=store)
    await ensure_search_attributes(client)
    endpoint = llm_settings.endpoint_from_args(args)
    log.info(
        "worker on %s/%s, LLM endpoint %s", temporal.address, temporal.namespace, endpoint.base_url
    )
    tools = tool_settings.tools_from_args(args)
    await join_workers(client, tools, store)
    endpoints = llm_settings.endpoints_from_args(args, endpoint)
    prices = PriceTable.load(args.prices)
    async with build_worker(
        client,
        endpoints,
        store,
        tools,
        prices,
        args.tenant_daily_budget_usd,
        versioning,
        embedding_settings.from_args(args),
    ):
        if versioning is not None:
            version = versioning.version
            log.info(
                "worker of deployment %s, build %s: new agents come to it once it is current "
                "(engram deployment set-current %s %s)",
                version.deployment_name,
                version.build_id,
                version.deployment_name,
                version.build_id,
            )
        await _until_stopped()
    log.info("worker stopped")


async def run_gateway(args: argparse.Namespace) -> None:
    store = _open_store(args.transcript_db)
    client = await connect(TemporalSettings.from_args(args), blobs=store)
    settings = _gateway_settings(args)
    security = gateway_security.for_gateway(store, args)
    server = await start_gateway(client, f"{args.host}:{args.port}", settings, store, security)
    log.info(
        "gateway on %s:%d (workers reach it at %s)",
        args.host,
        args.port,
        settings.advertise_address,
    )
    await _until_stopped()
    await server.stop(GRACE_SECONDS)
    log.info("gateway stopped")


async def run_http(args: argparse.Namespace) -> None:
    """A gateway serving the HTTP API too: its gRPC port also takes the workers' token relay,
    which is what streams the HTTP API's replies live."""
    store = _open_store(args.transcript_db)
    client = await connect(TemporalSettings.from_args(args), blobs=store)
    settings = _gateway_settings(args)
    security = gateway_security.for_gateway(store, args)
    server = await start_gateway(client, f"{args.host}:{args.port}", settings, store, security)
    http = await start_http(server, args.host, args.http_port)
    log.info(
        "HTTP API on %s:%d, gRPC on %s:%d (workers reach it at %s)",
        args.host,
        args.http_port,
        args.host,
        args.port,
        settings.advertise_address,
    )
    await _until_stopped()
    await http.stop()
    await server.stop(GRACE_SECONDS)
    log.info("HTTP API stopped")


async def run_keys(args: argparse.Namespace) -> None:
    store = open_transcript_store(key_commands.store_location(args))
    try:
        if args.action == "budget":
            code = budget_commands.run(args, store)
        else:
            code = key_commands.run(args, store)
    finally:
        store.close()
    if code:
        raise SystemExit(code)


async def run_probe(args: argparse.Namespace) -> None:
    try:
        if args.part == "gateway":
            probe_gateway(args.address, tls_ca=args.tls_ca)
        elif not await probe_worker(TemporalSettings.from_args(args)):
            raise RuntimeError(f"no worker is polling task queue {TASK_QUEUE}")
    except Exception as err:
        print(f"unhealthy: {err}", file=sys.stderr, flush=True)
        code = 1
    else:
        print("healthy", flush=True)
        code = 0
    # Skip interpreter teardown: grpc's and Temporal's native threads can crash it, turning a
    # healthy answer into a failed health check.
    os._exit(code)


def _open_store(location: str | Path) -> TranscriptStore:
    """The transcript store, its text encrypted when encryption keys are configured."""
    return encrypted_store(open_transcript_store(location), configured_keyring())


async def run_dev(args: argparse.Namespace) -> None:
    # Tools that keep files (engram.tools.workspace) keep them in the engine's data directory.
    os.environ["ENGRAM_DATA_DIR"] = str(args.data_dir.resolve())
    keyring = configured_keyring()
    store = _open_store(args.transcript_db or args.data_dir / "transcripts.db")
    # The Web UI reads payloads through a codec server of our own: it decrypts them when they are
    # encrypted, and reads those moved out of history from the store.
    codec, ui_codec_endpoint = start_dev_codec_server(keyring, args.ui_port, blobs=store)
    temporal = start_dev_server(
        args.data_dir, args.temporal_port, args.ui_port, ui_codec_endpoint=ui_codec_endpoint
    )
    local: LocalModelServer | None = None
    try:
        base_url = llm_settings.configured_base_url(args)
        llm_note = ""
        if base_url is None and not local_model.ollama_is_running():
            model = local_model.model_file()
            if model is not None and local_model.available():
                local = LocalModelServer(model, free_port(), args.data_dir / "local-model.log")
                await local.start()
                base_url = local.base_url
                llm_note = f" (local {local_model.MODEL_ALIAS}, answers for every model name)"
            else:
                llm_note = (
                    " (Ollama's default, not running: set ENGRAM_LLM_BASE_URL, or install "
                    "the local model with ./scripts/dev)"
                )
        await wait_for_port("127.0.0.1", args.temporal_port, temporal, timeout=60)
        client = await connect(
            TemporalSettings(address=f"127.0.0.1:{args.temporal_port}"), blobs=store
        )
        endpoint = llm_settings.endpoint_from_args(
            args, base_url, local_model.MODEL_ALIAS if local else ""
        )
        settings = _gateway_settings(args)
        security = gateway_security.for_dev(store, args)
        tools = tool_settings.tools_from_args(args)
        await join_workers(client, tools, store)
        endpoints = llm_settings.endpoints_from_args(args, endpoint)
        async with build_worker(
            client,
            endpoints,
            store,
            tools,
            PriceTable.load(args.prices),
            args.tenant_daily_budget_usd,
            embeddings=embedding_settings.from_args(args),
        ):
            server = await start_gateway(
                client, f"{args.host}:{args.port}", settings, store, security
            )
            http = await start_http(server, args.host, args.http_port)
            print(
                f"Engram is running.\n"
                f"  gateway (gRPC)   {args.host}:{args.port}\n"
                f"  HTTP API         http://{args.host}:{args.http_port}/v1\n"
                f"  Temporal         127.0.0.1:{args.temporal_port}\n"
                f"  Temporal Web UI  http://localhost:{args.ui_port}\n"
                f"  LLM endpoint     {endpoint.base_url}{llm_note}\n"
                f"  data             {args.data_dir.resolve()}\n"
                f"Ctrl-C stops everything.",
                flush=True,
            )
            await _until_stopped()
            await http.stop()
            await server.stop(GRACE_SECONDS)
    finally:
        if local is not None:
            local.stop()
        codec.close()
        _stop(temporal)
        print("Engram stopped.", flush=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


if __name__ == "__main__":
    main()
