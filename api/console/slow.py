"""The overview's slow figures, recomputed in the background at most every few seconds.

Three things cost too much to read on every request with 1M files in the ledger (see
docs/console.md): each dataset's rows (a sum over all its files' counts, as /datasets
gives them), each declaration against the database (what `chute datasets` says: a few
catalogue queries per dataset) and the dead letters (a broker connection). A request
that finds them older than MAX_AGE_SECONDS is answered with them as they are and starts
one refresh; only the very first request waits for them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from api.queries import Queries
from chute.postgres import db, tables
from chute.rabbitmq import broker
from chute.runtime.config import Config

log = logging.getLogger(__name__)

MAX_AGE_SECONDS = 3.0


@dataclass(frozen=True)
class Declaration:
    """A dataset's declaration against its table: `matches`, `would change` or `refused`,
    and the line that says how (chute.postgres.tables.TablePlan.summary)."""

    state: str
    line: str


@dataclass(frozen=True)
class SlowFigures:
    rows: dict[str, int]
    declarations: dict[str, Declaration]
    dead_letters: int | None  # None: unknown (no broker, or it did not answer)
    at: float = field(default_factory=time.monotonic)


class SlowCache:
    def __init__(self, config: Config, queries: Queries, uses_broker: bool) -> None:
        self.config = config
        self.queries = queries
        self.uses_broker = uses_broker
        self._value: SlowFigures | None = None
        self._refresh: asyncio.Task[None] | None = None

    async def get(self, pool: asyncpg.Pool) -> SlowFigures:
        if self._value is None:
            await self._compute(pool)
        elif (time.monotonic() - self._value.at > MAX_AGE_SECONDS
              and (self._refresh is None or self._refresh.done())):
            self._refresh = asyncio.create_task(self._quietly(pool))
        assert self._value is not None
        return self._value

    async def _quietly(self, pool: asyncpg.Pool) -> None:
        """A refresh that fails keeps the figures it had (the next request tries again)."""
        try:
            await self._compute(pool)
        except Exception as e:  # noqa: BLE001 - the page goes on with older figures
            log.warning("console figures not refreshed", extra={"error": repr(e)})

    async def _compute(self, pool: asyncpg.Pool) -> None:
        loop = asyncio.get_running_loop()
        plans = loop.run_in_executor(None, declarations, self.config)
        dead = (loop.run_in_executor(None, broker.dead_letter_count, self.config.amqp_url,
                                     self.config.namespace) if self.uses_broker else None)
        async with pool.acquire() as conn:
            rows = await self.queries.loaded_rows(conn)
        self._value = SlowFigures(rows, await plans, await dead if dead else None)


def declarations(config: Config) -> dict[str, Declaration]:
    """`chute datasets`'s verdict for each dataset, read as the API's read-only role."""
    conn = db.connect(config.read_url)
    try:
        with db.transaction(conn) as cur:
            cur.execute("SET TRANSACTION READ ONLY")
            cur.execute(f'SET LOCAL ROLE "{config.reader_role}"')  # a validated identifier
            found = [tables.plan(cur, dataset) for dataset in config.datasets]
    finally:
        conn.close()
    return {plan.dataset.name: _verdict(plan) for plan in found}


def _verdict(plan: Any) -> Declaration:
    if plan.refusal:
        return Declaration("refused", plan.summary)
    if plan.actions:
        return Declaration("would change", plan.summary)
    return Declaration("matches", "matches the database")
