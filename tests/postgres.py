"""A private PostgreSQL server for tests: its own data directory, port and lifetime.

Uses the server binaries of the machine's PostgreSQL (`.ci/run` installs Debian's). PostgreSQL
refuses to run as root, so under root the server runs as the `postgres` system user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psycopg
from psycopg import sql

from tests.engine import free_port


def server_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        raise RuntimeError(
            f"PostgreSQL's {name} is not installed (Debian: apt-get install postgresql)"
        )
    return found


class PostgresServer:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else ""

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run(prefix + list(command), check=True, capture_output=True)

    def start(self) -> PostgresServer:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        if not self.data.exists():
            self._run(server_bin("initdb"), "-D", str(self.data), "-U", "engram", "--auth=trust")
        self.resume()
        self._run(
            server_bin("psql"),
            *("-h", str(self.directory), "-p", str(self.port), "-U", "engram", "-d", "postgres"),
            *("-c", "CREATE DATABASE transcripts"),
        )
        return self

    def resume(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            server_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "server.log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(server_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    @property
    def url(self) -> str:
        return f"postgresql://engram@127.0.0.1:{self.port}/transcripts"

    def database(self, name: str) -> str:
        """The URL of a database of the test's own: what it stores (API keys, say) must not reach
        the other tests' engines, which share `url`."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url.rsplit("/", 1)[0] + "/" + name
