"""Built-in tools a worker can enable (`--tools engram.tools.builtin`, or import one of them into
your own tools module to enable only that one).

- `http_fetch`: an HTTP request to an allowed host or URL prefix. Nothing is allowed unless
  ENGRAM_HTTP_FETCH_ALLOW says so: a model must not be able to reach the worker's private network
  (cloud metadata endpoints, internal services) because a web page asked it to.
- `current_time`: the date and time in any IANA time zone; models do not know what day it is.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx2

from engram.tools.registry import ToolError, tool

ALLOW_ENV = "ENGRAM_HTTP_FETCH_ALLOW"
MAX_BYTES_ENV = "ENGRAM_HTTP_FETCH_MAX_BYTES"
DEFAULT_MAX_BYTES = 200_000
HARD_MAX_BYTES = 1_000_000
MAX_REDIRECTS = 5
REQUEST_TIMEOUT = 20.0
# Methods that change nothing: a network failure of theirs is retried, others' are reported.
SAFE_METHODS = ("GET", "HEAD")
# Headers a request may not set (lower case): the target, hop-by-hop and framing, forwarding.
FORBIDDEN_HEADERS = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
        "via",
        "forwarded",
    }
)
FORBIDDEN_HEADER_PREFIXES = ("proxy-", "x-forwarded-")
_TEXTUAL = re.compile(r"^text/|[/+](json|xml|javascript|ecmascript|x-www-form-urlencoded|yaml)\b")


@tool(timeout=timedelta(seconds=30), retries=2)
async def http_fetch(
    url: str,
    method: Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"] = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[str, Any]:
    """Make an HTTP request and return the response's status, content type and text.

    Only hosts and URLs the operator allowed can be reached; redirects are followed only to
    allowed places. Binary responses are not returned, only their size. The text is cut at
    max_bytes (see `truncated`).

    Args:
        url: absolute http or https URL
        method: HTTP method
        headers: extra request headers
        body: request body, sent as is (set Content-Type in headers)
        max_bytes: most bytes of the response body to return
    """
    limit = max(1, min(max_bytes, _max_bytes()))
    rules = allow_rules()
    if not rules:
        raise ToolError(
            f"http_fetch is disabled: no host is allowed. The operator enables hosts with "
            f"{ALLOW_ENV} (comma-separated hosts, *.domains or URL prefixes)."
        )
    check_allowed(url, rules)
    check_headers(headers or {})
    try:
        async with httpx2.AsyncClient(
            timeout=REQUEST_TIMEOUT, follow_redirects=False, trust_env=False
        ) as client:
            for _ in range(MAX_REDIRECTS + 1):
                request = client.build_request(
                    method, url, headers=headers, content=body.encode() if body else None
                )
                response = await client.send(request, stream=True)
                try:
                    location = response.headers.get("location")
                    if response.is_redirect and location:
                        url = urljoin(url, location)
                        check_allowed(url, rules)
                        if response.status_code in (301, 302, 303) and method != "HEAD":
                            method, body = "GET", None
                        continue
                    data, truncated = await _read_capped(response, limit)
                finally:
                    await response.aclose()
                return _describe(response, url, data, truncated)
    except httpx2.TransportError as err:
        what = f"{method} {url} failed: {type(err).__name__}: {err}"
        if method in SAFE_METHODS:
            raise ConnectionError(what) from err  # worth another attempt
        raise ToolError(what + " (not retried: the request may have had effects)") from err
    except httpx2.InvalidURL as err:
        raise ToolError(f"invalid URL {url!r}: {err}") from err
    raise ToolError(f"more than {MAX_REDIRECTS} redirects from {url}")


@tool(timeout=timedelta(seconds=5), retries=0, read_only=True)
def current_time(timezone: str = "UTC") -> dict[str, str]:
    """The current date and time.

    Args:
        timezone: IANA time zone name, e.g. Europe/Paris or America/New_York
    """
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(
            f"unknown time zone {timezone!r}: use an IANA name such as 'UTC', "
            "'Europe/Paris' or 'America/New_York'"
        ) from None
    now = datetime.now(UTC).astimezone(zone)
    return {
        "timezone": timezone,
        "iso": now.isoformat(timespec="seconds"),
        "date": now.date().isoformat(),
        "time": now.strftime("%H:%M:%S"),
        "weekday": now.strftime("%A"),
        "utc_offset": now.strftime("%z"),
    }


def allow_rules() -> list[str]:
    return [r.strip() for r in os.environ.get(ALLOW_ENV, "").split(",") if r.strip()]


def check_allowed(url: str, rules: list[str]) -> None:
    """Raise ToolError unless `url` is http(s) and matches one of the allow-list `rules`.

    A rule is a host (`api.example.com`, any port), `host:port`, `*.example.com` (subdomains),
    a URL prefix (`https://example.com/docs/`, matched at a path boundary), or `*` (anything).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"refused {url!r}: only absolute http and https URLs can be fetched")
    segments = [s.lower().replace("%2e", ".") for s in parts.path.split("/")]
    if "." in segments or ".." in segments:
        raise ToolError(f"refused {url!r}: '.' and '..' path segments are not allowed")
    if not any(_matches(parts, url, rule) for rule in rules):
        raise ToolError(
            f"refused {url!r}: its host is not allowed. Allowed: {', '.join(rules)} "
            f"(the operator sets {ALLOW_ENV})"
        )


def check_headers(headers: dict[str, str]) -> None:
    """Raise ToolError for a header the model may not set.

    `Host` would send the request to another virtual host than the allowed URL names (the
    allow-list checks the URL, the server routes on Host); hop-by-hop and framing headers would
    let the model smuggle a second request or talk to a proxy; forwarding headers would let it
    pose as another client to the allowed server.
    """
    refused = sorted(
        name
        for name in headers
        if name.strip().lower() in FORBIDDEN_HEADERS
        or name.strip().lower().startswith(FORBIDDEN_HEADER_PREFIXES)
    )
    if refused:
        forbidden = ", ".join(sorted(FORBIDDEN_HEADERS))
        prefixes = ", ".join(f"{p}*" for p in FORBIDDEN_HEADER_PREFIXES)
        raise ToolError(
            f"refused header {', '.join(refused)}: http_fetch does not let a request set "
            f"{forbidden} or {prefixes}; send the request without them"
        )


def _matches(parts: Any, url: str, rule: str) -> bool:
    host = str(parts.hostname).lower()
    if rule == "*":
        return True
    if "://" in rule:
        prefix = urlsplit(rule)
        if (prefix.hostname or "").lower() != host or prefix.port != parts.port:
            return False
        if not url.startswith(rule):
            return False
        rest = url[len(rule) :]
        return rule.endswith("/") or not rest or rest[0] in "/?#"
    rule_host, colon, rule_port = rule.lower().rpartition(":")
    if not colon or not rule_port.isdigit():
        rule_host, rule_port = rule.lower(), ""
    if rule_port and str(parts.port or "") != rule_port:
        return False
    if rule_host.startswith("*."):
        return host.endswith(rule_host[1:])
    return host == rule_host


def _max_bytes() -> int:
    try:
        return min(int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)), HARD_MAX_BYTES)
    except ValueError:
        return DEFAULT_MAX_BYTES


async def _read_capped(response: httpx2.Response, limit: int) -> tuple[bytes, bool]:
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) > limit:
            return bytes(data[:limit]), True
    return bytes(data), False


def _describe(response: httpx2.Response, url: str, data: bytes, truncated: bool) -> dict[str, Any]:
    content_type = response.headers.get("content-type", "")
    result: dict[str, Any] = {
        "status": response.status_code,
        "content_type": content_type,
        "url": url,
    }
    if not data or _TEXTUAL.search(content_type.split(";")[0].strip().lower()) or not content_type:
        result["text"] = data.decode(response.encoding or "utf-8", errors="replace")
    else:
        result["text"] = ""
        result["binary_bytes"] = len(data)
    result["truncated"] = truncated
    return result
