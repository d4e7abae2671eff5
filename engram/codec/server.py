"""The codec server: Temporal's remote codec protocol, so the Web UI and CLI can show payloads.

`POST .../encode` and `POST .../decode` take and return a `Payloads` message in protobuf JSON
(`{"payloads": [{"metadata": {...}, "data": "<base64>"}]}`); only the last part of the path
counts, as the protocol asks, so the endpoints can sit under any prefix. Browsers call it from the
Web UI's origin, so it answers CORS preflights for the configured origins.

Every POST must be authenticated, or it gets 401: `Authorization: Bearer <token>` (what
`temporal --codec-auth "Bearer <token>"` sends, and what the Web UI forwards when it passes its
access token), or the token as the first path segment (`http://host:port/<token>/decode`), for
the dev server's Web UI, which cannot be told to send a header. Tokens are compared in constant
time. A request whose `Host` is not a loopback name, the address listened on or one the operator
allowed is answered 421 before anything else: a page on another name rebound to this address
(DNS rebinding) gets nothing.

Given the transcript store, it also shows what the claim check moved out of history (every payload
over 2 KiB: codec/claim_check.py): a reference is read from the store and decoded. So `engram dev`
runs one even without encryption.

It is the standard library's threading HTTP server: two small JSON endpoints need no framework,
and the codec is synchronous, so a thread per request is all the concurrency it needs.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from engram.codec.claim_check import BlobStore, resolved
from engram.codec.keyring import EncryptionKeyError, Keyring
from engram.codec.payload_codec import PayloadCipher

TOKEN_VARIABLE = "ENGRAM_CODEC_SERVER_TOKEN"
DEFAULT_PORT = 8234
DEFAULT_ORIGIN = "http://localhost:8233"
# The Web UI sends batches of a history's payloads; Temporal caps one payload at 2 MiB.
MAX_BODY_BYTES = 64 * 1024 * 1024
ALLOWED_HEADERS = "Authorization, Content-Type, X-Namespace"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
HOSTS_VARIABLE = "ENGRAM_CODEC_SERVER_HOSTS"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodecServerSettings:
    token: str
    origins: frozenset[str]
    # Host names (no port) requests may name besides loopback's and the address listened on.
    hosts: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError(f"the codec server needs a token ({TOKEN_VARIABLE})")


class CodecServer:
    """The HTTP server, serving on a thread of its own until `close()`."""

    def __init__(
        self,
        keyring: Keyring | None,
        settings: CodecServerSettings,
        host: str,
        port: int,
        blobs: BlobStore | None = None,
    ) -> None:
        cipher = PayloadCipher(keyring) if keyring is not None else None

        def encode(payload: Payload) -> Payload:
            return cipher.encode(payload) if cipher is not None else payload

        def decode(payload: Payload) -> Payload:
            if blobs is not None:
                payload = resolved(payload, blobs)
            return cipher.decode(payload) if cipher is not None else payload

        class Handler(_CodecHandler):
            pass

        Handler.encode = staticmethod(encode)
        Handler.decode = staticmethod(decode)
        Handler.settings = settings
        Handler.hosts = allowed_hosts(host, settings.hosts)
        self._http = ThreadingHTTPServer((host, port), Handler)
        self._http.daemon_threads = True
        self._thread = threading.Thread(
            target=self._http.serve_forever, name="engram-codec-server", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    def start(self) -> CodecServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


def allowed_hosts(listen: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """The names a request's Host may give: loopback's, the address listened on (unless it is a
    wildcard), and `extra`. A page on another name that resolves here (DNS rebinding) is not
    served, whatever address it reached."""
    names = {*LOOPBACK_HOSTS, *(h.strip().lower() for h in extra if h.strip())}
    if listen and listen not in ("0.0.0.0", "::", ""):
        names.add(listen.lower().strip("[]"))
    return frozenset(names)


def host_name(header: str) -> str:
    """The name in a Host header, without its port or an IPv6 address's brackets."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else ""
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def origins(values: Iterable[str]) -> frozenset[str]:
    """Origins as the browser sends them: scheme://host[:port], no trailing slash."""
    return frozenset(v.strip().rstrip("/") for value in values for v in value.split(",") if v)


class _CodecHandler(BaseHTTPRequestHandler):
    encode: Callable[[Payload], Payload]
    decode: Callable[[Payload], Payload]
    settings: CodecServerSettings
    hosts: frozenset[str]
    server_version = "engram-codec"
    protocol_version = "HTTP/1.1"

    def do_OPTIONS(self) -> None:
        if not self._host_allowed():
            return
        # A preflight carries no credentials: only the origin decides.
        if not self._origin_allowed():
            self._reply(HTTPStatus.FORBIDDEN, {"error": "origin not allowed"})
            return
        self.send_response(HTTPStatus.NO_CONTENT)
        self._cors_headers()
        self.send_header("Access-Control-Allow-Methods", "POST, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", ALLOWED_HEADERS)
        self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if not self._host_allowed():
            return
        segments = [s for s in urlsplit(self.path).path.split("/") if s]
        if not self._authenticated(segments):
            self._reply(
                HTTPStatus.UNAUTHORIZED, {"error": "unauthorized"}, {"WWW-Authenticate": "Bearer"}
            )
            return
        operation = segments[-1] if segments else ""
        if operation not in ("encode", "decode"):
            self._reply(HTTPStatus.NOT_FOUND, {"error": "POST .../encode or .../decode"})
            return
        length = _content_length(self.headers.get("Content-Length"))
        if length is None:
            self.close_connection = True
            self._reply(HTTPStatus.BAD_REQUEST, {"error": "Content-Length is not a byte count"})
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, {"error": "body too large"})
            return
        try:
            payloads = json_format.Parse(self.rfile.read(length), Payloads())
        except (json_format.ParseError, UnicodeDecodeError) as err:
            self._reply(HTTPStatus.BAD_REQUEST, {"error": f"not a Payloads message: {err}"})
            return
        convert = self.encode if operation == "encode" else self.decode
        try:
            result = Payloads(payloads=[convert(p) for p in payloads.payloads])
        except EncryptionKeyError as err:
            # Loud for the caller, which shows it; the server's log says which key is missing.
            log.warning("codec server cannot %s: %s", operation, err)
            self._reply(HTTPStatus.BAD_REQUEST, {"error": str(err), "keyId": err.key_id})
            return
        self._reply(
            HTTPStatus.OK,
            json_format.MessageToDict(result, always_print_fields_with_no_presence=True),
        )

    def _authenticated(self, segments: list[str]) -> bool:
        token = self.settings.token.encode()
        scheme, _, credential = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token):
            return True
        # The first of at least two segments: `/<token>/decode`, never the operation itself.
        return len(segments) >= 2 and hmac.compare_digest(segments[0].encode(), token)

    def _host_allowed(self) -> bool:
        """Whether the request names this server; if not, it is answered 421 and False."""
        if host_name(self.headers.get("Host", "")) in self.hosts:
            return True
        self.close_connection = True
        self._reply(HTTPStatus.MISDIRECTED_REQUEST, {"error": "unknown Host"})
        return False

    def _origin_allowed(self) -> bool:
        return self.headers.get("Origin", "") in self.settings.origins

    def _cors_headers(self) -> None:
        if self._origin_allowed():
            self.send_header("Access-Control-Allow-Origin", self.headers["Origin"])
            # The Web UI may send cookies ("include cross-origin credentials").
            self.send_header("Access-Control-Allow-Credentials", "true")
        self.send_header("Vary", "Origin")

    def _reply(
        self, status: HTTPStatus, body: object, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self._cors_headers()
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        # Paths may hold the token: log the operation's outcome only, at debug level.
        log.debug("codec server: %s", args[1] if len(args) > 1 else "")


def _content_length(header: str | None) -> int | None:
    """The body's length; None unless the header is absent (no body) or plain digits. A negative
    length would make the server read until the client closes: without any limit."""
    if header is None:
        return 0
    value = header.strip()
    return int(value) if value.isdigit() and value.isascii() else None
