"""Refusing to serve a network without keys: the safe default for where a gateway listens.

A gateway on a loopback address with no keys runs open, as `engram dev` always has. One that
listens on any other address refuses to start unless the store holds a key or the operator says
`--insecure-no-auth`, and says so.
"""

from __future__ import annotations

import ipaddress
import socket


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback address ("" and 0.0.0.0 are not)."""
    host = host.strip().strip("[]")
    if not host:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


def refusal(host: str, has_keys: bool, insecure_no_auth: bool) -> str | None:
    """Why a gateway listening on `host` must not start, or None."""
    if has_keys or insecure_no_auth or is_loopback(host):
        return None
    return (
        f"refusing to serve on {host!r} without API keys: anyone who can reach the port could "
        "read, chat with and delete every agent. Create a key first (engram keys create --tenant "
        "NAME), listen on localhost, or start with --insecure-no-auth (ENGRAM_INSECURE_NO_AUTH=1) "
        "if something in front of the gateway authenticates callers"
    )
