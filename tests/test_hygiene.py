"""What a probe of one machine found: headers a model may not set, logs that quote conversations
with encryption on, a codec server that answered any Host or a bad Content-Length, its dev token
on the command line, and a data directory every local user could read."""

from __future__ import annotations

import http.client
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engram import dev_server
from engram.codec.keyring import Keyring, new_key_entry
from engram.codec.server import CodecServer, CodecServerSettings, allowed_hosts, host_name
from engram.observability import content_logs
from engram.tools import builtin as builtin_tools
from engram.tools.builtin import http_fetch
from engram.tools.registry import ToolError

# --- http_fetch ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "header",
    [
        "Host",
        "host",
        "Connection",
        "Transfer-Encoding",
        "Content-Length",
        "Proxy-Authorization",
        "X-Forwarded-For",
        "Upgrade",
        "TE",
    ],
)
async def test_http_fetch_refuses_a_header_the_model_may_not_set(
    header: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(builtin_tools.ALLOW_ENV, "127.0.0.1")
    # Refused before anything is sent: nothing listens on this port.
    with pytest.raises(ToolError, match=f"refused header {header}: http_fetch does not let"):
        await http_fetch("http://127.0.0.1:9/", headers={header: "internal.example"})


def test_http_fetch_lets_ordinary_headers_through() -> None:
    builtin_tools.check_headers({"Accept": "application/json", "Authorization": "Bearer x"})


# --- logs with encryption on --------------------------------------------------------------------


@pytest.fixture
def kept_out(monkeypatch: pytest.MonkeyPatch) -> Iterator[logging.Handler]:
    """Logging as a process with encryption keys sets it up, into a list of lines."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.lines = lines  # type: ignore[attr-defined]
    root = logging.getLogger()
    root.addHandler(handler)
    levels = {n: logging.getLogger(n).level for n in content_logs.HTTP_CLIENT_LOGGERS}
    old_root = root.level
    root.setLevel(logging.INFO)
    monkeypatch.setattr(content_logs, "_on", False)
    assert content_logs.encryption_configured({"ENGRAM_ENCRYPTION_KEYS": "k:x"})
    content_logs.keep_out()
    yield handler
    root.removeHandler(handler)
    root.setLevel(old_root)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_with_encryption_on_no_log_line_names_a_fetched_url(kept_out: logging.Handler) -> None:
    secret = "https://intranet.example/patients/4711?name=Jane"
    # What httpx2 logs for every request, and what the SDK logs for a failed tool attempt.
    logging.getLogger("httpx2").info('HTTP Request: %s %s "%s"', "GET", secret, "HTTP/1.1 200 OK")
    try:
        raise ConnectionError(f"GET {secret} failed")
    except ConnectionError:
        logging.getLogger("temporalio.activity").warning(
            "Completing activity as failed", exc_info=True
        )
    logging.getLogger("engram.tools").info(
        content_logs.withheld(f"tool http_fetch failed: {secret}", "tool http_fetch failed")
    )
    lines: list[str] = kept_out.lines  # type: ignore[attr-defined]
    assert lines, "the lines were logged"
    assert not [line for line in lines if "intranet" in line], lines
    assert any("ConnectionError; details withheld" in line for line in lines)


# --- the codec server ---------------------------------------------------------------------------


@pytest.fixture
def codec() -> Iterator[CodecServer]:
    keyring = Keyring.parse(new_key_entry("k1"))
    server = CodecServer(keyring, CodecServerSettings("tok", frozenset()), "127.0.0.1", 0).start()
    yield server
    server.close()


def raw(server: CodecServer, host: str, headers: dict[str, str], body: bytes = b"") -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.putrequest("POST", "/decode", skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", host)
        for name, value in headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_codec_server_answers_only_its_own_host_names(codec: CodecServer) -> None:
    auth = {"Authorization": "Bearer tok", "Content-Length": "2"}
    assert raw(codec, f"localhost:{codec.port}", auth, b"{}") == 200
    assert raw(codec, f"127.0.0.1:{codec.port}", auth, b"{}") == 200
    # A page on attacker.example whose name now resolves to 127.0.0.1 (DNS rebinding).
    assert raw(codec, f"attacker.example:{codec.port}", auth, b"{}") == 421
    assert raw(codec, "", auth, b"{}") == 421
    assert host_name("[::1]:8234") == "::1" and host_name("LocalHost") == "localhost"
    assert "codec.internal" in allowed_hosts("0.0.0.0", ["codec.internal"])
    assert "0.0.0.0" not in allowed_hosts("0.0.0.0")


@pytest.mark.parametrize("length", ["-1", "abc", "1e3", " ", "+5"])
def test_the_codec_server_refuses_a_bad_content_length(codec: CodecServer, length: str) -> None:
    # -1 used to read until the client hung up, past any size limit; text used to kill the handler.
    status = raw(codec, "localhost", {"Authorization": "Bearer tok", "Content-Length": length})
    assert status == 400


# --- engram dev ---------------------------------------------------------------------------------


def test_the_dev_codec_token_is_not_on_temporals_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[list[str]] = []

    class Popen:
        def __init__(self, command: list[str], **kwargs: object) -> None:
            started.append(command)

    monkeypatch.setattr(subprocess, "Popen", Popen)
    monkeypatch.setattr(dev_server, "temporal_binary", lambda: "temporal")
    endpoint = "http://127.0.0.1:5555/the-secret-token"
    dev_server.start_dev_server(tmp_path / "data", 7233, 8233, ui_codec_endpoint=endpoint)
    (command,) = started
    assert not [a for a in command if "the-secret-token" in a]
    env_file = Path(command[command.index("--env-file") + 1])
    assert "the-secret-token" in env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert command[command.index("--env") + 1] == dev_server.CLI_ENVIRONMENT


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_the_data_directory_is_private(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    made = dev_server.private_dir(tmp_path / "new" / ".engram")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    old = tmp_path / "old"
    old.mkdir()
    os.chmod(old, 0o755)
    with caplog.at_level(logging.WARNING):
        dev_server.private_dir(old)
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    assert "open to other local users (mode 755); it is now 700" in caplog.text
