"""The overview's slow figures, recomputed in the background now and then.

Three things cost too much to read on every request with 1M files in the ledger (see
docs/console.md for the figures): each dataset's rows (a sum over all its files' counts,
as /datasets gives them: about half a second), each declaration against the database
(what `chute datasets` says: a few catalogue queries per dataset) and the dead letters
(a broker connection). Each is kept with its age; a request that finds one older than
its limit is answered with it as it is and starts one refresh, so only the very first
request waits. Rows may thus lag the ledger by up to ROWS_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg

from api.queries import Queries
from chute.postgres import db, tables
from chute.rabbitmq import broker
from chute.runtime.config import Config

log = logging.getLogger(__name__)

ROWS_SECONDS = 30.0
DECLARATIONS_SECONDS = 10.0
DEAD_LETTERS_SECONDS = 5.0

T = TypeVar("T")


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


class Refreshed(Generic[T]):
    """One figure, computed by `compute`, refreshed in the background once older than
    `max_age` seconds; a refresh that fails keeps the value it had."""

    def __init__(self, what: str, compute: Callable[[], Awaitable[T]], max_age: float) -> None:
        self.what = what
        self.compute = compute
        self.max_age = max_age
        self._value: T
        self._at: float | None = None  # when it was computed; None: not yet
        self._task: asyncio.Task[None] | None = None

    async def get(self) -> T:
        if self._at is None:
            await self._refresh()
        elif (time.monotonic() - self._at > self.max_age
              and (self._task is None or self._task.done())):
            self._task = asyncio.create_task(self._quietly())
        return self._value

    async def _refresh(self) -> None:
        self._value = await self.compute()
        self._at = time.monotonic()

    async def _quietly(self) -> None:
        try:
            await self._refresh()
        except Exception as e:  # noqa: BLE001 - the page goes on with the older figure
            log.warning("console figure not refreshed", extra={"figure": self.what,
                                                               "error": repr(e)})


class SlowCache:
    def __init__(self, config: Config, queries: Queries, uses_broker: bool) -> None:
        self.config = config
        self.pool: asyncpg.Pool | None = None

        async def rows() -> dict[str, int]:
            assert self.pool is not None
            async with self.pool.acquire() as conn, conn.transaction(readonly=True):
                # One core, not three: this runs while people watch, beside the loaders.
                await conn.execute("SET LOCAL max_parallel_workers_per_gather = 0")
                return await queries.loaded_rows(conn)

        async def plans() -> dict[str, Declaration]:
            return await _in_thread(declarations, config)

        async def dead() -> int | None:
            if not uses_broker:
                return None
            return await _in_thread(broker.dead_letter_count, config.amqp_url,
                                    config.namespace)

        self.rows = Refreshed("rows", rows, ROWS_SECONDS)
        self.plans = Refreshed("declarations", plans, DECLARATIONS_SECONDS)
        self.dead = Refreshed("dead letters", dead, DEAD_LETTERS_SECONDS)

    async def get(self, pool: asyncpg.Pool) -> SlowFigures:
        self.pool = pool
        rows, plans, dead = await asyncio.gather(self.rows.get(), self.plans.get(),
                                                    self.dead.get())
        return SlowFigures(rows, plans, dead)


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


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
