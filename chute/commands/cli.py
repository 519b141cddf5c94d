"""The `chute` command: ingest files, follow them, see status and rejects, retry.

It talks to a running chute through its API (CHUTE_API_HOST/PORT, or --api) and its
data folder (CHUTE_DATA_DIR); `retry` also needs the database and broker URLs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import requests
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from chute.errors import (
    BrokerUnavailable,
    ConfigError,
    DatabaseUnavailable,
    RebuildError,
    RetryError,
)
from chute.runtime.config import Config, api_address

FINAL = ("loaded", "duplicate", "quarantined", "failed")
# Piped output is not cut to 80 columns: file ids and reasons must survive `| grep`.
console = Console(width=None if sys.stdout.isatty() else 240)
errors = Console(stderr=True)


class Api:
    def __init__(self, base: str, token: str | None) -> None:
        self.base = base.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, **params: Any) -> Any:
        try:
            response = requests.get(self.base + path, params=params, headers=self.headers,
                                    timeout=10)
        except requests.ConnectionError:
            fail(f"cannot reach the chute API at {self.base} (is `make up` running?)", 2)
        if response.status_code == 404:
            fail(_message(response), 1)
        if response.status_code != 200:
            fail(f"the API answered {response.status_code}: {_message(response)}", 2)
        return response.json()


@click.group()
@click.option("--api", "api_url", envvar="CHUTE_API_URL", default=None,
              help="API base URL [default: http://CHUTE_API_HOST:CHUTE_API_PORT]")
@click.pass_context
def main(ctx: click.Context, api_url: str | None) -> None:
    """chute: CSV files in a folder -> rows in PostgreSQL, served over HTTP."""
    ctx.obj = Session(api_url)


class Session:
    """What a command may need, read when it first asks: `status` reads the API's address
    only (no datasets file, no pyarrow), `infer` reads nothing at all, so neither fails
    on a configuration it does not use (an unfinished chute.toml beside the file infer
    writes, say)."""

    def __init__(self, api_url: str | None) -> None:
        self.api_url = api_url
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            try:
                self._config = Config.from_env()
            except ConfigError as e:
                fail(f"configuration error: {e}", 2)
        return self._config

    @property
    def api(self) -> Api:
        try:
            host, port, token = api_address()
        except ConfigError as e:
            fail(f"configuration error: {e}", 2)
        return Api(self.api_url or f"http://{host}:{port}", token)


@main.command()
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "folder", default="", metavar="SUBFOLDER",
              help="Drop into this subfolder of the inbox (where a dataset's files go).")
@click.option("--follow", is_flag=True, help="Show progress until each file is done.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds to follow.")
@click.pass_obj
def ingest(session: Session, files: tuple[Path, ...], folder: str, follow: bool,
           timeout: float) -> None:
    """Copy FILES into the inbox safely (write, then rename)."""
    config, api = session.config, session.api
    inbox = config.data_dir / "inbox"
    if not inbox.is_dir():
        fail(f"no inbox at {inbox} (set CHUTE_DATA_DIR)", 2)
    target = (inbox / folder).resolve()
    if inbox.resolve() not in (target, *target.parents):
        fail(f"--to {folder}: not a folder inside the inbox", 2)
    target.mkdir(parents=True, exist_ok=True)
    dropped = [(_drop(path, target), path) for path in files]
    if not follow:
        for sha256, path in dropped:
            console.print(f"{path.name}: in the inbox (sha256 {sha256[:12]}…)")
        return
    prefix = target.relative_to(inbox.resolve()).as_posix()
    outcomes = _follow(api, dropped, timeout, f"{prefix}/" if prefix != "." else "")
    bad = [o for o in outcomes if o["state"] not in ("loaded", "duplicate")]
    sys.exit(1 if bad else 0)


@main.command()
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option("--state", type=click.Choice(["received", "processing", *FINAL]))
@click.option("--dataset", help="Only files of this dataset.")
@click.pass_obj
def status(session: Session, limit: int, state: str | None,
           dataset: str | None) -> None:
    """List recent files, newest first."""
    api = session.api
    params: dict[str, Any] = {"limit": limit}
    if state:
        params["state"] = state
    if dataset:
        params["dataset"] = dataset
    items = api.get("/files", **params)["items"]
    keyed = any(f.get("rows_inserted") is not None for f in items)
    table = Table("file_id", "name", "dataset", "state", "loaded", "rejected", "total",
                  *(("of loaded (keyed)",) if keyed else ()), "received", "took", "error")
    for f in items:
        table.add_row(f["file_id"], f["name"], f["dataset"] or "-", _styled(f["state"]),
                      _n(f["rows_loaded"]),
                      _n(f["rows_rejected"]), _n(f["rows_total"]),
                      *((keyed_counts(f) or "-",) if keyed else ()),
                      f["received_at"][:19].replace("T", " "), _took(f),
                      (f["error"] or "")[:60])
    console.print(table if items else "no files yet")


@main.command()
@click.argument("file_id")
@click.option("--limit", default=1000, show_default=True, type=click.IntRange(1, 100000))
@click.pass_obj
def rejects(session: Session, file_id: str, limit: int) -> None:
    """Print the rejected rows of a file: line, reason, raw text."""
    api = session.api
    table = Table("line", "reason", "raw")
    cursor, shown = None, 0
    while shown < limit:
        params: dict[str, Any] = {"limit": min(1000, limit - shown)}
        if cursor:
            params["cursor"] = cursor
        page = api.get(f"/files/{file_id}/rejects", **params)
        for item in page["items"]:
            table.add_row(str(item["line"]), item["reason"], item["raw"])
        shown += len(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    console.print(table if shown else f"{file_id}: no rejected rows")


@main.command()
@click.argument("file_id")
@click.pass_obj
def retry(session: Session, file_id: str) -> None:
    """Put a quarantined or failed file back through the pipeline."""
    from chute.commands.retry import retry_file  # needs the database and broker

    config, api = session.config, session.api
    api.get(f"/files/{file_id}")  # a clear 404 for an unknown file
    try:
        name = retry_file(config, file_id)
    except RetryError as e:
        fail(str(e), 1)
    console.print(f"{name}: sent back through the pipeline ({file_id})")


@main.command()
@click.argument("dataset")
@click.option("--skip-missing", is_flag=True,
              help="Go on without archived files that are missing or changed (each is "
                   "recorded as failed, with why) instead of stopping before the swap.")
@click.pass_obj
def rebuild(session: Session, dataset: str, skip_missing: bool) -> None:
    """Rebuild DATASET's table from the archive under the current declaration, beside
    the live one, then swap it in; the old table is kept as TABLE_previous."""
    from chute.commands.rebuild import rebuild as run  # needs the database and broker

    config = session.config
    # A bar only on a terminal: piped output stays lines (rich's bar adds blank ones).
    bar = Progress(TextColumn(f"rebuilding {dataset}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total} files"), TimeElapsedColumn(),
                   console=errors, transient=True) if errors.is_terminal else None
    with bar or contextlib.nullcontext():
        task = bar.add_task("files", total=None) if bar else None

        def progress(done: int, total: int) -> None:
            if bar is not None and task is not None:
                bar.update(task, completed=done, total=total)

        try:
            outcome = run(config, dataset, skip_missing, progress)
        except (RebuildError, DatabaseUnavailable, BrokerUnavailable) as e:
            problem = str(e)
        else:
            problem = None
    if problem is not None:
        fail(problem, 1)  # once the bar is gone: one line
    for line in outcome.skipped:
        console.print(f"left out: {line}", markup=False, soft_wrap=True)
    console.print(f"dataset {dataset}: rebuilt from {outcome.files} archived files and "
                  f"swapped in (rebuild {outcome.rebuild_id}); the old table is "
                  f"{outcome.kept_as}; {outcome.resent} waiting files sent on", markup=False)


@main.command()
@click.argument("file_ids", nargs=-1)
@click.option("--dataset", help="Every loaded file of this dataset that has rejects.")
@click.option("--rejected", is_flag=True, help="Replay rejected rows (the only kind).")
@click.pass_obj
def replay(session: Session, file_ids: tuple[str, ...], dataset: str | None,
           rejected: bool) -> None:
    """Give the rejected rows of loaded files a second chance under the current
    declaration: FILE_ID..., or --dataset NAME --rejected."""
    from chute.commands.replay import replay as run  # needs the database

    if bool(file_ids) == bool(dataset):
        fail("name FILE_IDs, or --dataset NAME --rejected (not both)", 2)
    if dataset and not rejected:
        fail("--dataset replays rejected rows: say --rejected", 2)
    try:
        results = run(session.config, dataset, list(file_ids),
                      lambda r: console.print(f"{r.name} ({r.file_id}): {r.passed} rows now "
                                              f"load, {r.still_rejected} still rejected",
                                              markup=False))
    except (RebuildError, DatabaseUnavailable) as e:
        fail(str(e), 1)
    console.print(f"replayed {len(results)} files: {sum(r.passed for r in results)} rows "
                  "loaded", markup=False)


@main.command()
@click.pass_obj
def datasets(session: Session) -> None:
    """List the datasets and whether the database matches each declaration: what
    start-up would add, or why it would refuse. Changes nothing."""
    from chute.postgres import db  # needs the database

    config = session.config
    console.print(f"datasets from {config.datasets.source}")
    try:
        plans = db.plan_tables(config.database_url, config.datasets)
    except DatabaseUnavailable as e:
        fail(str(e), 2)
    table = Table("dataset", "table", "match", "columns", "filters", "database")
    for plan in plans:
        d = plan.dataset
        columns = ", ".join(f"{c.name} {c.type.name}{'' if c.required else '?'}"
                            for c in d.columns)
        verdict = (f"[red]{plan.summary}[/red]" if plan.refusal
                   else plan.summary if plan.exists else f"would {plan.summary}")
        table.add_row(d.name, d.table, " ".join(d.match), columns, ", ".join(d.filters),
                      verdict)
    console.print(table)
    sys.exit(1 if any(p.refusal for p in plans) else 0)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def infer(file: Path) -> None:
    """Print a dataset declaration guessed from FILE, to edit and save as chute.toml."""
    from chute.datasets.infer import infer as guess

    try:
        click.echo(guess(file), nl=False)
    except ValueError as e:
        fail(str(e), 1)


def _drop(path: Path, inbox: Path) -> str:
    """Write beside the inbox's files under a hidden name, then rename: the watcher only
    ever sees the finished file."""
    digest = hashlib.sha256()
    partial = inbox / f".{path.name}.{os.getpid()}.part"
    with path.open("rb") as source, partial.open("wb") as target:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            target.write(chunk)
        target.flush()
        os.fsync(target.fileno())
    os.replace(partial, inbox / path.name)
    return digest.hexdigest()


def _follow(api: Api, dropped: list[tuple[str, Path]], timeout: float,
            prefix: str) -> list[dict[str, Any]]:
    outcomes: dict[Path, dict[str, Any]] = {}
    columns = (TextColumn("{task.description}"), BarColumn(),
               TextColumn("{task.completed:,.0f}/{task.total:,.0f} rows"),
               TextColumn("{task.fields[state]}"), TimeElapsedColumn())
    started = time.monotonic()
    with Progress(*columns, console=console, transient=False) as progress:
        tasks = {path: progress.add_task(path.name, total=_estimate_rows(path), state="waiting")
                 for _sha, path in dropped}
        while len(outcomes) < len(dropped):
            if time.monotonic() - started > timeout:
                fail(f"gave up after {timeout:.0f} s", 3)
            for sha256, path in dropped:
                if path in outcomes:
                    continue
                found = _arrival(api, prefix + path.name, sha256)
                if found is None:
                    continue
                done = (found["rows_loaded"] or 0) + (found["rows_rejected"] or 0)
                total = found["rows_total"] if found["rows_total"] is not None else None
                progress.update(tasks[path], completed=done, state=found["state"],
                                **({"total": total} if total is not None else {}))
                if found["state"] in FINAL:
                    outcomes[path] = found
            time.sleep(0.1)
    for _sha, path in dropped:
        f = outcomes[path]
        extra = f" ({f['error']})" if f["error"] else ""
        if keyed_counts(f):
            extra += f" ({keyed_counts(f)})"
        console.print(f"{path.name}: {f['state']}, {_n(f['rows_loaded'])} rows loaded, "
                      f"{_n(f['rows_rejected'])} rejected, in {_took(f)}{extra}")
    return list(outcomes.values())


def _arrival(api: Api, name: str, sha256: str) -> dict[str, Any] | None:
    for item in api.get("/files", name=name, limit=20)["items"]:
        if item["sha256"] == sha256:
            return item
    return None


def _estimate_rows(path: Path) -> int:
    """Physical lines minus the header: the total until the transformer knows it."""
    lines = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return max(lines, 1)


def _took(f: dict[str, Any]) -> str:
    if not f.get("finished_at"):
        return "-"
    seconds = (datetime.fromisoformat(f["finished_at"])
               - datetime.fromisoformat(f["received_at"])).total_seconds()
    return f"{seconds:.2f} s"


def keyed_counts(f: dict[str, Any]) -> str:
    """What a keyed file's loaded rows did (docs/keys.md); "" for a dataset without a key."""
    if f.get("rows_inserted") is None:
        return ""
    deleted = f.get("rows_deleted")
    return (f"{f['rows_inserted']:,} inserted, {f['rows_replaced']:,} replaced, "
            f"{f['rows_ignored']:,} ignored as older"
            + (f", {deleted:,} deleted" if deleted is not None else ""))


def _n(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _styled(state: str) -> str:
    colour = {"loaded": "green", "duplicate": "cyan", "quarantined": "yellow",
              "failed": "red"}.get(state, "white")
    return f"[{colour}]{state}[/{colour}]"


def _message(response: requests.Response) -> str:
    try:
        return response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200]


def fail(message: str, code: int) -> NoReturn:
    errors.print(f"chute: {message}", markup=False, soft_wrap=True)  # one line, for grep
    sys.exit(code)


if __name__ == "__main__":
    main()
