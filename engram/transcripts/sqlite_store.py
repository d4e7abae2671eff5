"""The transcript store in one SQLite file: for `engram dev` and processes on one host.

WAL mode lets the gateway read while a worker writes. Events' text is indexed for full-text
search in an FTS5 table kept in step with `events` on append (engram/transcripts/search.py).
Events' embeddings, when search by meaning is on, are float32 BLOBs ranked by cosine distance:
sqlite-vec's `vec_distance_cosine` when the package is installed and this Python's sqlite3 can
load extensions, else the same function in Python (engram/transcripts/vectors.py), slower.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import asdict
from pathlib import Path

from engram.auth.records import ApiKey, Role
from engram.transcripts import search, vectors
from engram.transcripts.search import SearchPage, SearchQuery
from engram.transcripts.spend import (
    HOLD_SECONDS,
    DaySpend,
    Hold,
    TenantDay,
    effective_budget,
    grants,
)
from engram.transcripts.vectors import Nearest
from engram.workflows.types import AgentTool, Event, Turn

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    agent_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (agent_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS turns (
    agent_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    turn TEXT NOT NULL,
    PRIMARY KEY (agent_id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tools (
    name TEXT PRIMARY KEY,
    tool TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS tenant_budgets (
    tenant TEXT PRIMARY KEY,
    daily_usd REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tenant_spend (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    spent_usd REAL NOT NULL,
    PRIMARY KEY (tenant, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS spend_holds (
    hold_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    amount_usd REAL NOT NULL,
    held_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_holds_by_day ON spend_holds (tenant, day);
CREATE TABLE IF NOT EXISTS event_vectors (
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts REAL NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (agent_id, model, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS vector_marks (
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    through INTEGER NOT NULL,
    PRIMARY KEY (agent_id, model)
) WITHOUT ROWID;
"""
# The events' words, by agent and seq. Its own copy of the text (events are WITHOUT ROWID, so no
# external-content table can point at them) holds only what search.index_texts lets in.
FTS_SCHEMA = """
CREATE VIRTUAL TABLE events_fts USING fts5(
    text, agent_id UNINDEXED, seq UNINDEXED, tokenize = 'unicode61'
);
"""
API_KEY_COLUMNS = "key_id, tenant, role, secret_hash, created_at, expires_at, revoked_at"


class SqliteTranscriptStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)
        self.vector_engine = _vector_functions(self._db)
        self._lock = threading.Lock()
        self._create_index()

    def _create_index(self) -> None:
        """The FTS table, filled from the events stored before it existed."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            exists = self._db.execute(
                "SELECT 1 FROM sqlite_master WHERE name = 'events_fts'"
            ).fetchone()
            if not exists:
                self._db.execute(FTS_SCHEMA)
                stored = self._db.execute("SELECT agent_id, event FROM events").fetchall()
                for agent_id, raw in stored:
                    self._index(agent_id, [Event(**json.loads(raw))])
            self._db.execute("COMMIT")

    def append(self, agent_id: str, events: list[Event]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            new = [
                e
                for e in events
                if self._db.execute(
                    "INSERT OR IGNORE INTO events VALUES (?, ?, ?)",
                    (agent_id, e.seq, json.dumps(asdict(e))),
                ).rowcount
            ]
            self._index(agent_id, new)
            self._db.execute("COMMIT")

    def _index(self, agent_id: str, events: list[Event]) -> None:
        rows = [
            (text, agent_id, e.seq)
            for e, text in zip(events, search.index_texts(events), strict=True)
            if text
        ]
        self._db.executemany("INSERT INTO events_fts VALUES (?, ?, ?)", rows)

    def search(self, query: SearchQuery) -> SearchPage:
        """The best matches of `query` in the agent's events (FTS5's bm25), a page of them."""
        expression = search.fts5_query(query.text)
        if not expression:
            return SearchPage()
        sql = (
            "SELECT e.event FROM events_fts f JOIN events e"
            " ON e.agent_id = f.agent_id AND e.seq = f.seq"
            " WHERE events_fts MATCH ? AND f.agent_id = ? AND f.seq > ?"
        )
        params: list[object] = [expression, query.agent_id, query.from_sequence]
        if query.since:
            sql += " AND json_extract(e.event, '$.ts') >= ?"
            params.append(query.since)
        if query.until:
            sql += " AND json_extract(e.event, '$.ts') < ?"
            params.append(query.until)
        sql += " ORDER BY bm25(events_fts), f.seq DESC LIMIT ? OFFSET ?"
        params += [query.limit + 1, query.offset]
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        found = [Event(**json.loads(row[0])) for row in rows]
        return search.page(found, query)

    def index_window(self, agent_id: str, after: int, through: int) -> list[tuple[int, float, str]]:
        window = self.between(agent_id, max(0, after - vectors.INDEX_LOOKBACK), through)
        return vectors.index_rows(window, after)

    def vector_mark(self, agent_id: str, model: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT through FROM vector_marks WHERE agent_id = ? AND model = ?",
                (agent_id, model),
            ).fetchone()
        return int(row[0]) if row else 0

    def put_vectors(
        self, agent_id: str, model: str, rows: list[tuple[int, float, bytes]], through: int
    ) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT OR IGNORE INTO event_vectors VALUES (?, ?, ?, ?, ?)",
                [(agent_id, model, seq, ts, vector) for seq, ts, vector in rows],
            )
            self._db.execute(
                "INSERT INTO vector_marks VALUES (?, ?, ?) ON CONFLICT (agent_id, model)"
                " DO UPDATE SET through = max(through, excluded.through)",
                (agent_id, model, through),
            )
            self._db.execute("COMMIT")

    def nearest(self, query: SearchQuery, model: str, vector: bytes, k: int) -> list[Nearest]:
        """Exact: every vector of the agent's is compared (the primary key keeps them together)."""
        sql = (
            "SELECT seq, 1.0 - vec_distance_cosine(vector, ?) FROM event_vectors"
            " WHERE agent_id = ? AND model = ? AND seq > ?"
        )
        params: list[object] = [vector, query.agent_id, model, query.from_sequence]
        if query.since:
            sql += " AND ts >= ?"
            params.append(query.since)
        if query.until:
            sql += " AND ts < ?"
            params.append(query.until)
        sql += " ORDER BY 2 DESC, seq DESC LIMIT ?"
        params.append(k)
        with self._lock:
            rows = self._db.execute(sql, params).fetchall()
        return [Nearest(seq=int(seq), similarity=float(similarity)) for seq, similarity in rows]

    def between(self, agent_id: str, after: int, through: int) -> list[Event]:
        """Events with after < seq <= through, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT event FROM events WHERE agent_id = ? AND seq > ? AND seq <= ? ORDER BY seq",
                (agent_id, after, through),
            ).fetchall()
        return [Event(**json.loads(row[0])) for row in rows]

    def last_seq(self, agent_id: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT max(seq) FROM events WHERE agent_id = ?", (agent_id,)
            ).fetchone()
        return int(row[0] or 0)

    def append_turns(self, agent_id: str, first_index: int, turns: list[Turn]) -> None:
        rows = [(agent_id, first_index + i, json.dumps(asdict(t))) for i, t in enumerate(turns)]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR IGNORE INTO turns VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def turns(self, agent_id: str, count: int) -> list[Turn]:
        """The agent's first `count` turns, in order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT turn FROM turns WHERE agent_id = ? AND idx < ? ORDER BY idx",
                (agent_id, count),
            ).fetchall()
        return [Turn(**json.loads(row[0])) for row in rows]

    def copy_through(self, source: str, target: str, seq: int, turn_count: int) -> None:
        # Row for row inside the database: a 10,000-turn agent's 40,000 events are not decoded,
        # re-encoded and re-indexed one at a time (a fork took over 2 s that way).
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            copied = self._db.execute(
                "INSERT OR IGNORE INTO events SELECT ?, seq, event FROM events"
                " WHERE agent_id = ? AND seq <= ?",
                (target, source, seq),
            ).rowcount
            if copied:
                self._db.execute(
                    "INSERT INTO events_fts SELECT text, ?, seq FROM events_fts"
                    " WHERE agent_id = ? AND seq <= ?",
                    (target, source, seq),
                )
            self._db.execute(
                "INSERT OR IGNORE INTO turns SELECT ?, idx, turn FROM turns"
                " WHERE agent_id = ? AND idx < ?",
                (target, source, turn_count),
            )
            self._db.execute("COMMIT")

    def forget_after(self, agent_id: str, seq: int, turn_index: int) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute("DELETE FROM events WHERE agent_id = ? AND seq > ?", (agent_id, seq))
            self._db.execute(
                "DELETE FROM event_vectors WHERE agent_id = ? AND seq > ?", (agent_id, seq)
            )
            self._db.execute(
                "UPDATE vector_marks SET through = min(through, ?) WHERE agent_id = ?",
                (seq, agent_id),
            )
            self._db.execute(
                "DELETE FROM turns WHERE agent_id = ? AND idx >= ?", (agent_id, turn_index)
            )
            self._db.execute("COMMIT")

    def put_blob(self, sha256: str, data: bytes) -> None:
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (sha256, data))

    def get_blob(self, sha256: str) -> bytes | None:
        with self._lock:
            row = self._db.execute("SELECT data FROM blobs WHERE sha256 = ?", (sha256,)).fetchone()
        return None if row is None else bytes(row[0])

    def publish_tools(self, tools: list[AgentTool]) -> None:
        rows = [(t.name, json.dumps(asdict(t)), time.time()) for t in tools]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO tools VALUES (?, ?, ?)", rows)
            self._db.execute("COMMIT")

    def tools(self) -> list[AgentTool]:
        with self._lock:
            rows = self._db.execute("SELECT tool FROM tools ORDER BY name").fetchall()
        return [AgentTool(**json.loads(row[0])) for row in rows]

    def add_api_key(self, key: ApiKey) -> None:
        with self._lock:
            self._db.execute(
                f"INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    key.key_id,
                    key.tenant,
                    str(key.role),
                    key.secret_hash,
                    key.created_at,
                    key.expires_at,
                    key.revoked_at,
                ),
            )

    def api_keys(self) -> list[ApiKey]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"
            ).fetchall()
        return [
            ApiKey(
                key_id=r[0],
                tenant=r[1],
                role=Role(r[2]),
                secret_hash=r[3],
                created_at=r[4],
                expires_at=r[5],
                revoked_at=r[6],
            )
            for r in rows
        ]

    def revoke_api_key(self, key_id: str, at: float) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE key_id = ? AND revoked_at IS NULL",
                (at, key_id),
            )
        return cursor.rowcount == 1

    def set_tenant_budget(self, tenant: str, daily_usd: float | None) -> None:
        with self._lock:
            if daily_usd is None:
                self._db.execute("DELETE FROM tenant_budgets WHERE tenant = ?", (tenant,))
            else:
                self._db.execute(
                    "INSERT OR REPLACE INTO tenant_budgets VALUES (?, ?)", (tenant, daily_usd)
                )

    def hold_spend(self, hold: Hold, default_budget_usd: float) -> DaySpend:
        # BEGIN IMMEDIATE takes the database's write lock: every other process's hold waits.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                own = self._db.execute(
                    "SELECT daily_usd FROM tenant_budgets WHERE tenant = ?", (hold.tenant,)
                ).fetchone()
                budget = effective_budget(None if own is None else own[0], default_budget_usd)
                spent, held, granted = 0.0, 0.0, True
                if budget is not None:
                    spent, held = self._day(hold.tenant, hold.day, hold.held_at)
                    granted = grants(budget, spent, held, hold.amount_usd)
                if granted and budget is not None:
                    self._db.execute(
                        "INSERT INTO spend_holds VALUES (?, ?, ?, ?, ?)",
                        (hold.hold_id, hold.tenant, hold.day, hold.amount_usd, hold.held_at),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return DaySpend(granted=granted, budget_usd=budget, spent_usd=spent, held_usd=held)

    def _day(self, tenant: str, day: str, now: float) -> tuple[float, float]:
        """What the tenant's day spent and holds (live holds only; dead ones are dropped)."""
        self._db.execute(
            "DELETE FROM spend_holds WHERE tenant = ? AND held_at <= ?",
            (tenant, now - HOLD_SECONDS),
        )
        spent = self._db.execute(
            "SELECT spent_usd FROM tenant_spend WHERE tenant = ? AND day = ?", (tenant, day)
        ).fetchone()
        held = self._db.execute(
            "SELECT total(amount_usd) FROM spend_holds WHERE tenant = ? AND day = ?", (tenant, day)
        ).fetchone()
        return (0.0 if spent is None else float(spent[0])), float(held[0])

    def settle_spend(self, hold: Hold, cost_usd: float) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM spend_holds WHERE hold_id = ?", (hold.hold_id,))
                if cost_usd:
                    self._db.execute(
                        "INSERT INTO tenant_spend VALUES (?, ?, ?) ON CONFLICT (tenant, day)"
                        " DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd",
                        (hold.tenant, hold.day, cost_usd),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def tenant_days(self, day: str) -> list[TenantDay]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t.tenant, b.daily_usd, coalesce(s.spent_usd, 0),"
                " (SELECT total(amount_usd) FROM spend_holds h"
                "  WHERE h.tenant = t.tenant AND h.day = ? AND h.held_at > ?)"
                " FROM (SELECT tenant FROM tenant_budgets"
                "       UNION SELECT tenant FROM tenant_spend WHERE day = ?) t"
                " LEFT JOIN tenant_budgets b ON b.tenant = t.tenant"
                " LEFT JOIN tenant_spend s ON s.tenant = t.tenant AND s.day = ?"
                " ORDER BY t.tenant",
                (day, time.time() - HOLD_SECONDS, day, day),
            ).fetchall()
        return [
            TenantDay(tenant=r[0], own_budget_usd=r[1], spent_usd=float(r[2]), held_usd=float(r[3]))
            for r in rows
        ]

    def close(self) -> None:
        self._db.close()


def _vector_functions(db: sqlite3.Connection) -> str:
    """Give `db` vec_distance_cosine: sqlite-vec's ("sqlite-vec"), else Python's ("python")."""
    try:
        import sqlite_vec  # type: ignore[import-not-found, import-untyped, unused-ignore]

        db.enable_load_extension(True)
        try:
            sqlite_vec.load(db)
        finally:
            db.enable_load_extension(False)
        return "sqlite-vec"
    except (ImportError, AttributeError, sqlite3.OperationalError) as err:
        # AttributeError: a Python built without loadable SQLite extensions (pyenv's default).
        log.debug("sqlite-vec not loaded (%s); cosine distance in Python", err)
        db.create_function("vec_distance_cosine", 2, vectors.cosine_distance, deterministic=True)
        return "python"
