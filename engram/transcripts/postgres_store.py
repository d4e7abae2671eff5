"""The transcript store in PostgreSQL: for deployments with many hosts (docker-compose uses it).

Rows are JSONB, so an operator can read an agent's old turns with plain SQL. A connection pool
replaces connections that broke (a database restart costs the calls in flight, which their
activities retry, not the process). Events' words are a tsvector column with a GIN index, set on
append from what engram/transcripts/search.py lets into the index. Events' embeddings, when search
by meaning is on, are `real[]` of unit length ranked by their dot product in SQL: exact, over one
agent's rows (pgvector is not in Debian 12's archive, so nothing here needs it).
"""

from __future__ import annotations

import time
from dataclasses import asdict

from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool

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

SCHEMA = """
CREATE TABLE IF NOT EXISTS engram_events (
    agent_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event JSONB NOT NULL,
    PRIMARY KEY (agent_id, seq)
);
CREATE TABLE IF NOT EXISTS engram_turns (
    agent_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    turn JSONB NOT NULL,
    PRIMARY KEY (agent_id, idx)
);
CREATE TABLE IF NOT EXISTS engram_blobs (
    sha256 TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS engram_tools (
    name TEXT PRIMARY KEY,
    tool JSONB NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS engram_api_keys (
    key_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS engram_tenant_budgets (
    tenant TEXT PRIMARY KEY,
    daily_usd DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS engram_tenant_spend (
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    spent_usd DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (tenant, day)
);
CREATE TABLE IF NOT EXISTS engram_spend_holds (
    hold_id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    day TEXT NOT NULL,
    amount_usd DOUBLE PRECISION NOT NULL,
    held_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS engram_spend_holds_by_day ON engram_spend_holds (tenant, day);
CREATE TABLE IF NOT EXISTS engram_event_vectors (
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    seq BIGINT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    vector REAL[] NOT NULL,
    PRIMARY KEY (agent_id, model, seq)
);
CREATE TABLE IF NOT EXISTS engram_vector_marks (
    agent_id TEXT NOT NULL,
    model TEXT NOT NULL,
    through BIGINT NOT NULL,
    PRIMARY KEY (agent_id, model)
);
"""
# Full-text search: the 'simple' configuration (lower case, no stemming) matches as SQLite's FTS5
# does. Events stored before the column existed are indexed once, when it is added.
FTS_SCHEMA = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM information_schema.columns
                   WHERE table_name = 'engram_events' AND column_name = 'words') THEN
        ALTER TABLE engram_events ADD COLUMN words tsvector;
        UPDATE engram_events SET words = to_tsvector('simple', event->>'text')
            WHERE event->>'text' NOT LIKE 'enc:v1:%' AND event->>'kind' IN
                ('user_message', 'final_answer', 'error', 'tool_call', 'tool_result',
                 'observation');
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS engram_events_words ON engram_events USING GIN (words);
"""
API_KEY_COLUMNS = "key_id, tenant, role, secret_hash, created_at, expires_at, revoked_at"
# Workers and gateways start together; concurrent CREATE TABLE IF NOT EXISTS can still collide.
SCHEMA_LOCK = 0x656E6772616D  # "engram"


class PostgresTranscriptStore:
    def __init__(self, url: str, *, connect_timeout: float = 30.0) -> None:
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=4,
            open=False,
            check=ConnectionPool.check_connection,
            name="engram-transcripts",
        )
        self._pool.open(wait=True, timeout=connect_timeout)
        with self._pool.connection() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            conn.execute(SCHEMA)
            conn.execute(FTS_SCHEMA)

    def append(self, agent_id: str, events: list[Event]) -> None:
        rows = [
            (agent_id, e.seq, Jsonb(asdict(e)), text)
            for e, text in zip(events, search.index_texts(events), strict=True)
        ]
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO engram_events (agent_id, seq, event, words)"
                " VALUES (%s, %s, %s, to_tsvector('simple', %s)) ON CONFLICT DO NOTHING",
                rows,
            )

    def search(self, query: SearchQuery) -> SearchPage:
        """The best matches of `query` in the agent's events (ts_rank), a page of them."""
        terms = search.words(query.text)
        if not terms:
            return SearchPage()
        # Every word, as FTS5 matches: no operators of the user's get through.
        matching = " & ".join(f"'{w}'" for w in terms)
        sql = (
            "SELECT event FROM engram_events, to_tsquery('simple', %s) q"
            " WHERE agent_id = %s AND words @@ q AND seq > %s"
        )
        params: list[object] = [matching, query.agent_id, query.from_sequence]
        if query.since:
            sql += " AND (event->>'ts')::float8 >= %s"
            params.append(query.since)
        if query.until:
            sql += " AND (event->>'ts')::float8 < %s"
            params.append(query.until)
        # Normalized by length (1: divided by 1 + log of it), as bm25 does.
        sql += " ORDER BY ts_rank(words, q, 1) DESC, seq DESC LIMIT %s OFFSET %s"
        params += [query.limit + 1, query.offset]
        with self._pool.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return search.page([Event(**row[0]) for row in rows], query)

    def index_window(self, agent_id: str, after: int, through: int) -> list[tuple[int, float, str]]:
        window = self.between(agent_id, max(0, after - vectors.INDEX_LOOKBACK), through)
        return vectors.index_rows(window, after)

    def vector_mark(self, agent_id: str, model: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT through FROM engram_vector_marks WHERE agent_id = %s AND model = %s",
                (agent_id, model),
            ).fetchone()
        return int(row[0]) if row else 0

    def put_vectors(
        self, agent_id: str, model: str, rows: list[tuple[int, float, bytes]], through: int
    ) -> None:
        with self._pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO engram_event_vectors VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT DO NOTHING",
                [(agent_id, model, seq, ts, vectors.unpack(v)) for seq, ts, v in rows],
            )
            cur.execute(
                "INSERT INTO engram_vector_marks VALUES (%s, %s, %s) ON CONFLICT (agent_id, model)"
                " DO UPDATE SET through = greatest(engram_vector_marks.through, EXCLUDED.through)",
                (agent_id, model, through),
            )

    def nearest(self, query: SearchQuery, model: str, vector: bytes, k: int) -> list[Nearest]:
        """Exact: every vector of the agent's is compared (the primary key finds them)."""
        sql = (
            "SELECT seq, (SELECT sum(a * b) FROM unnest(vector, %s::real[]) AS t(a, b))"
            " FROM engram_event_vectors WHERE agent_id = %s AND model = %s AND seq > %s"
        )
        params: list[object] = [vectors.unpack(vector), query.agent_id, model, query.from_sequence]
        if query.since:
            sql += " AND ts >= %s"
            params.append(query.since)
        if query.until:
            sql += " AND ts < %s"
            params.append(query.until)
        sql += " ORDER BY 2 DESC NULLS LAST, seq DESC LIMIT %s"
        params.append(k)
        with self._pool.connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [Nearest(seq=int(seq), similarity=float(sim or 0.0)) for seq, sim in rows]

    def between(self, agent_id: str, after: int, through: int) -> list[Event]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT event FROM engram_events WHERE agent_id = %s AND seq > %s AND seq <= %s"
                " ORDER BY seq",
                (agent_id, after, through),
            ).fetchall()
        return [Event(**row[0]) for row in rows]

    def last_seq(self, agent_id: str) -> int:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT max(seq) FROM engram_events WHERE agent_id = %s", (agent_id,)
            ).fetchone()
        return int(row[0] or 0) if row else 0

    def append_turns(self, agent_id: str, first_index: int, turns: list[Turn]) -> None:
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO engram_turns VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                [(agent_id, first_index + i, Jsonb(asdict(t))) for i, t in enumerate(turns)],
            )

    def turns(self, agent_id: str, count: int) -> list[Turn]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT turn FROM engram_turns WHERE agent_id = %s AND idx < %s ORDER BY idx",
                (agent_id, count),
            ).fetchall()
        return [Turn(**row[0]) for row in rows]

    def copy_through(self, source: str, target: str, seq: int, turn_count: int) -> None:
        # Inside the database: no event is decoded, re-encoded or re-indexed (see SQLite's).
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO engram_events (agent_id, seq, event, words)"
                " SELECT %s, seq, event, words FROM engram_events"
                " WHERE agent_id = %s AND seq <= %s ON CONFLICT DO NOTHING",
                (target, source, seq),
            )
            conn.execute(
                "INSERT INTO engram_turns SELECT %s, idx, turn FROM engram_turns"
                " WHERE agent_id = %s AND idx < %s ON CONFLICT DO NOTHING",
                (target, source, turn_count),
            )

    def forget_after(self, agent_id: str, seq: int, turn_index: int) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute(
                "DELETE FROM engram_events WHERE agent_id = %s AND seq > %s", (agent_id, seq)
            )
            conn.execute(
                "DELETE FROM engram_event_vectors WHERE agent_id = %s AND seq > %s", (agent_id, seq)
            )
            conn.execute(
                "UPDATE engram_vector_marks SET through = least(through, %s) WHERE agent_id = %s",
                (seq, agent_id),
            )
            conn.execute(
                "DELETE FROM engram_turns WHERE agent_id = %s AND idx >= %s", (agent_id, turn_index)
            )

    def put_blob(self, sha256: str, data: bytes) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                "INSERT INTO engram_blobs VALUES (%s, %s) ON CONFLICT DO NOTHING", (sha256, data)
            )

    def get_blob(self, sha256: str) -> bytes | None:
        with self._pool.connection() as conn:
            row = conn.execute(
                "SELECT data FROM engram_blobs WHERE sha256 = %s", (sha256,)
            ).fetchone()
        return None if row is None else bytes(row[0])

    def publish_tools(self, tools: list[AgentTool]) -> None:
        with self._pool.connection() as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO engram_tools VALUES (%s, %s, now())"
                " ON CONFLICT (name) DO UPDATE SET tool = EXCLUDED.tool, updated_at = now()",
                [(t.name, Jsonb(asdict(t))) for t in tools],
            )

    def tools(self) -> list[AgentTool]:
        with self._pool.connection() as conn:
            rows = conn.execute("SELECT tool FROM engram_tools ORDER BY name").fetchall()
        return [AgentTool(**row[0]) for row in rows]

    def add_api_key(self, key: ApiKey) -> None:
        with self._pool.connection() as conn:
            conn.execute(
                f"INSERT INTO engram_api_keys ({API_KEY_COLUMNS})"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
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
        with self._pool.connection() as conn:
            rows = conn.execute(
                f"SELECT {API_KEY_COLUMNS} FROM engram_api_keys ORDER BY created_at, key_id"
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
        with self._pool.connection() as conn:
            cursor = conn.execute(
                "UPDATE engram_api_keys SET revoked_at = %s"
                " WHERE key_id = %s AND revoked_at IS NULL",
                (at, key_id),
            )
            return cursor.rowcount == 1

    def set_tenant_budget(self, tenant: str, daily_usd: float | None) -> None:
        with self._pool.connection() as conn:
            if daily_usd is None:
                conn.execute("DELETE FROM engram_tenant_budgets WHERE tenant = %s", (tenant,))
            else:
                conn.execute(
                    "INSERT INTO engram_tenant_budgets VALUES (%s, %s)"
                    " ON CONFLICT (tenant) DO UPDATE SET daily_usd = EXCLUDED.daily_usd",
                    (tenant, daily_usd),
                )

    def hold_spend(self, hold: Hold, default_budget_usd: float) -> DaySpend:
        with self._pool.connection() as conn, conn.transaction():
            own = conn.execute(
                "SELECT daily_usd FROM engram_tenant_budgets WHERE tenant = %s", (hold.tenant,)
            ).fetchone()
            budget = effective_budget(None if own is None else float(own[0]), default_budget_usd)
            if budget is None:
                return DaySpend(granted=True, budget_usd=None, spent_usd=0.0, held_usd=0.0)
            # The day's row, locked: every other hold (or settling) of this tenant's day waits
            # for this transaction, in any process.
            conn.execute(
                "INSERT INTO engram_tenant_spend VALUES (%s, %s, 0) ON CONFLICT DO NOTHING",
                (hold.tenant, hold.day),
            )
            row = conn.execute(
                "SELECT spent_usd FROM engram_tenant_spend WHERE tenant = %s AND day = %s"
                " FOR UPDATE",
                (hold.tenant, hold.day),
            ).fetchone()
            spent = float(row[0]) if row else 0.0
            conn.execute(
                "DELETE FROM engram_spend_holds WHERE tenant = %s AND held_at <= %s",
                (hold.tenant, hold.held_at - HOLD_SECONDS),
            )
            total = conn.execute(
                "SELECT coalesce(sum(amount_usd), 0) FROM engram_spend_holds"
                " WHERE tenant = %s AND day = %s",
                (hold.tenant, hold.day),
            ).fetchone()
            held = float(total[0]) if total else 0.0
            granted = grants(budget, spent, held, hold.amount_usd)
            if granted:
                conn.execute(
                    "INSERT INTO engram_spend_holds VALUES (%s, %s, %s, %s, %s)",
                    (hold.hold_id, hold.tenant, hold.day, hold.amount_usd, hold.held_at),
                )
        return DaySpend(granted=granted, budget_usd=budget, spent_usd=spent, held_usd=held)

    def settle_spend(self, hold: Hold, cost_usd: float) -> None:
        with self._pool.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM engram_spend_holds WHERE hold_id = %s", (hold.hold_id,))
            if cost_usd:
                conn.execute(
                    "INSERT INTO engram_tenant_spend VALUES (%s, %s, %s)"
                    " ON CONFLICT (tenant, day)"
                    " DO UPDATE SET spent_usd = engram_tenant_spend.spent_usd + EXCLUDED.spent_usd",
                    (hold.tenant, hold.day, cost_usd),
                )

    def tenant_days(self, day: str) -> list[TenantDay]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT t.tenant, b.daily_usd, coalesce(s.spent_usd, 0),"
                " (SELECT coalesce(sum(amount_usd), 0) FROM engram_spend_holds h"
                "  WHERE h.tenant = t.tenant AND h.day = %s AND h.held_at > %s)"
                " FROM (SELECT tenant FROM engram_tenant_budgets"
                "       UNION SELECT tenant FROM engram_tenant_spend WHERE day = %s) t"
                " LEFT JOIN engram_tenant_budgets b ON b.tenant = t.tenant"
                " LEFT JOIN engram_tenant_spend s ON s.tenant = t.tenant AND s.day = %s"
                " ORDER BY t.tenant",
                (day, time.time() - HOLD_SECONDS, day, day),
            ).fetchall()
        return [
            TenantDay(
                tenant=r[0],
                own_budget_usd=None if r[1] is None else float(r[1]),
                spent_usd=float(r[2]),
                held_usd=float(r[3]),
            )
            for r in rows
        ]

    def close(self) -> None:
        self._pool.close()
