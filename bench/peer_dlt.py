"""The second peer: dlt (dlthub's data load tool) loading the very file chute loads.

dlt is what a Python data engineer would write instead of deploying chute: a few lines
that point dlt's filesystem source at the file and run a pipeline into PostgreSQL. This
module runs it the way dlt's documentation shows ("Cloud storage and filesystem": the
`filesystem` resource piped into the `read_csv` reader, `pipeline.run(...with_name(table))`
with the postgres destination), with dlt's defaults: pandas reads the file in chunks of
10,000 rows, dlt infers each column's type from the values it sees, and loads INSERT
statements (its default file format for postgres). `--method duckdb` takes the faster path
the same documentation recommends: the `read_csv_duckdb` reader yielding Arrow tables,
copied into PostgreSQL as CSV.

dlt runs under its own venv, never the project's, and this module does not import chute:

    python3 -m venv .venv-dlt
    .venv-dlt/bin/pip install "dlt[postgres]==1.31.0" pandas==3.1.1 duckdb==2.0.1 \\
        pyarrow==26.0.1
    .venv-dlt/bin/python -m bench.peer_dlt --file F.csv --dataset people --url URL

What dlt does not do the way chute does, so its table is not chute's: it has no notion of
a column fed by a part of a field (people's fullname stays one column, not first_name and
last_name), no rules (min/max, patterns, required values), no trimming, and no column types
declared in advance; it renames the headers to snake_case ("Order ID" order_id, "Weight
(kg)" weight_kgx) and adds two columns of its own (_dlt_load_id, _dlt_id; not on the Arrow
path). It types a column from the first batch it meets, and pandas types
each 10,000-row chunk on its own: one 'abc' in the first chunk makes people's age a text
column (later ages land there as '41' or, from a chunk holding an empty age, '41.0'),
while a value that does not fit a column typed earlier goes to a "variant" column beside
it (created__v_text) with the typed one left NULL. Either way a bad row is loaded, not
rejected; "notes" and "columns" in the output say which. The pandas reader stops at a row
with more fields than the header (pandas' default), failing the whole run with nothing
loaded; `--method pandas-skip` passes pandas' `on_bad_lines="skip"` through read_csv, as
the error leads a user to do, and drops such rows silently. DuckDB's sniffer does worse
with such rows: it reads the people file as one text column, every line a row.

Each run loads into a fresh schema (dlt's dataset) with a temporary pipelines directory,
and drops the schema afterwards. dlt writes nothing to the database until its load step,
so the load runs in a child process killed after `--timeout` seconds; a run cut short
reports the rows that had been committed by then, flagged as unfinished (as is a run that
failed, with its "error"). "seconds" is the child's whole life, interpreter start and
imports included, as for a user's script; "run_seconds" is pipeline.run alone. dlt keeps
one file of its own outside the run, an anonymous id in its global directory (/var/dlt as
root, ~/.dlt otherwise), even with its telemetry off.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DLT_REQUIREMENT = "dlt[postgres]==1.31.0"
# The readers' own libraries, which dlt[postgres] does not pull in.
READER_REQUIREMENTS = ("pandas==3.1.1", "duckdb==2.0.1", "pyarrow==26.0.1")

METHODS = {
    "pandas": "dlt filesystem source | read_csv() (pandas, chunks of 10,000 rows), "
              "pipeline.run into the postgres destination with its default "
              "insert_values file format",
    "pandas-skip": "dlt filesystem source | read_csv(on_bad_lines='skip') (pandas drops "
                   "rows with more fields than the header instead of failing the run), "
                   "pipeline.run into postgres with the insert_values file format",
    "duckdb": "dlt filesystem source | read_csv_duckdb(use_pyarrow=True), "
              "pipeline.run(loader_file_format='csv'): Arrow tables COPYed into postgres",
}
SAME_COLUMNS = "the file's columns as they are (dlt does not split fullname)"


def _reader(method: str) -> Any:
    from dlt.sources.filesystem import read_csv, read_csv_duckdb

    if method == "duckdb":
        return read_csv_duckdb(use_pyarrow=True)
    if method == "pandas-skip":  # what pandas' error message leads a user to
        return read_csv(on_bad_lines="skip")
    return read_csv()


def _resource(path: Path, method: str, table: str) -> Any:
    """The documented reader chain: list the one file, then parse it."""
    from dlt.sources.filesystem import filesystem

    files = filesystem(bucket_url=path.parent.resolve().as_uri(), file_glob=path.name)
    return (files | _reader(method)).with_name(table)


def with_password(url: str) -> str:
    """dlt's postgres credentials refuse a URL without a password, even for a server
    that trusts its clients (and ignores any password): give it a placeholder."""
    parts = urlsplit(url)
    if parts.password is not None or not parts.username:
        return url
    netloc = f"{parts.username}:unused@{parts.netloc.split('@', 1)[1]}"
    return urlunsplit(parts._replace(netloc=netloc))


def _load(path: Path, method: str, url: str, schema: str, table: str,
          pipelines_dir: str) -> float:
    """One dlt pipeline run, as a user's script would make it; its own seconds."""
    import dlt

    pipeline = dlt.pipeline(pipeline_name=schema, pipelines_dir=pipelines_dir,
                            destination=dlt.destinations.postgres(credentials=with_password(url)),
                            dataset_name=schema)
    options = {"loader_file_format": "csv"} if method == "duckdb" else {}
    started = time.perf_counter()
    pipeline.run(_resource(path, method, table), **options)
    return time.perf_counter() - started


def _child(answer: Connection, *args: Any) -> None:
    """The load in a session of its own, so a timeout can kill it and anything it forks."""
    os.setsid()
    try:
        answer.send({"run_seconds": round(_load(*args), 3)})
    except Exception as error:  # dlt wraps the reader's error in PipelineStepFailed
        answer.send({"error": f"{type(error).__name__}: {error}"[:1500]})


def run_in_child(timeout: float, *args: Any) -> tuple[float, dict[str, Any] | None]:
    """Wall seconds of the child's load, and what it answered (None once killed)."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, as a user's script
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(send, *args))
    started = time.perf_counter()
    child.start()
    child.join(timeout)
    seconds = time.perf_counter() - started
    if child.is_alive():
        os.killpg(child.pid, signal.SIGKILL)  # its open transaction is rolled back
        child.join()
        return seconds, None
    return seconds, receive.recv() if receive.poll() else {"error": f"exit {child.exitcode}"}


def _count(cur: Any, schema: str, table: str) -> int:
    cur.execute("SELECT to_regclass(%s)", (f'"{schema}"."{table}"',))
    if cur.fetchone()[0] is None:  # dlt creates the table in its load step only
        return 0
    cur.execute(f'SELECT count(*) FROM "{schema}"."{table}"')
    return cur.fetchone()[0]


def _column_types(cur: Any, schema: str, table: str) -> dict[str, str]:
    cur.execute("SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                (schema, table))
    return dict(cur.fetchall())


def _variant_notes(cur: Any, schema: str, table: str, columns: dict[str, str]) -> list[str]:
    """What dlt did with values that did not fit their column's type: one note a column."""
    notes = []
    for variant in (name for name in columns if "__v_" in name):
        base = variant.split("__v_")[0]
        cur.execute(f'SELECT count("{variant}") FROM "{schema}"."{table}"')
        notes.append(f"{base} typed {columns.get(base, '?')}: {cur.fetchone()[0]} values "
                     f"that do not fit went to a variant column {variant} "
                     f"({columns[variant]}), their rows loaded with {base} NULL")
    return notes


def _nulls_note(cur: Any, schema: str, table: str, columns: dict[str, str]) -> str:
    """Empty values (missing fields included) are loaded as NULL, never refused."""
    data = [name for name in columns if not name.startswith("_dlt_") and "__v_" not in name]
    counts = ", ".join(f'count(*) FILTER (WHERE "{name}" IS NULL)' for name in data)
    cur.execute(f'SELECT {counts} FROM "{schema}"."{table}"')
    nulls = {name: n for name, n in zip(data, cur.fetchone(), strict=True) if n}
    return f"NULLs loaded: {nulls or 'none'}"


def _age_note(cur: Any, schema: str, columns: dict[str, str]) -> str:
    """People's age: the column chute types as an integer and the bad rows spoil."""
    if "age" not in columns:  # DuckDB's sniffer gave up on the delimiter
        return f"no age column: the file was read as {list(columns)}"
    if columns["age"] not in ("character varying", "text"):
        return f"age typed {columns['age']}"
    # pandas types each chunk on its own: a chunk holding 'abc' is read as strings, one
    # holding an empty age as floats, and dlt writes those floats into the text column.
    # (With DuckDB, the sniffer types the whole file at once.)
    cur.execute(f"""SELECT count(*) FILTER (WHERE age ~ '^-?[0-9]+$'),
                           count(*) FILTER (WHERE age ~ '^-?[0-9]+[.]0$'),
                           count(*) FILTER (WHERE age !~ '^-?[0-9]+([.]0)?$'),
                           count(*) FILTER (WHERE age IS NULL)
                    FROM "{schema}".people""")
    whole, floats, others, empty = cur.fetchone()
    return (f"age typed {columns['age']}, from the first chunk pandas read (one non-number "
            f"there makes all its ages strings): "
            f"{whole} whole numbers, {floats} written as floats ('41.0', from chunks "
            f"pandas read as floats), {others} other texts kept as they are ('abc', ' 38 '), "
            f"{empty} NULL")


def inspect_and_drop(url: str, schema: str, table: str) -> dict[str, Any]:
    """Rows and column types that made it, what dlt did with bad values; then the schema
    goes, with dlt's own tables (_dlt_loads, _dlt_version, _dlt_pipeline_state)."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn, conn.cursor() as cur:
            rows = _count(cur, schema, table)
            columns = _column_types(cur, schema, table)
            notes = _variant_notes(cur, schema, table, columns) if columns else []
            if table == "people" and columns:
                notes.insert(0, _age_note(cur, schema, columns))
            if columns:
                notes.append(_nulls_note(cur, schema, table, columns))
            for dataset in (schema, f"{schema}_staging"):  # staging: merge/replace only
                cur.execute(f'DROP SCHEMA IF EXISTS "{dataset}" CASCADE')
    finally:
        conn.close()
    return {"rows": rows, "columns": columns, "notes": notes}


def dlt_peer(path: Path, dataset: str, url: str, timeout: float,
             method: str = "pandas") -> dict[str, Any]:
    """dlt loading `path` into a fresh schema of `url`, for at most `timeout` seconds."""
    from importlib.metadata import version

    # dlt normalizes names to snake_case: keep the schema's name already normal.
    schema = f"chute_dlt_{dataset}_{os.getpid()}_{time.time_ns() % 10**9}"
    with tempfile.TemporaryDirectory(prefix="chute-dlt-") as pipelines_dir:
        seconds, answer = run_in_child(timeout, path, method, url, schema, dataset,
                                       pipelines_dir)
    found = inspect_and_drop(url, schema, dataset)
    answer = answer or {}
    return {"seconds": round(seconds, 3), "rows": found["rows"],
            "finished": "run_seconds" in answer,
            "rows_per_s": round(found["rows"] / seconds) if seconds else 0,
            "dlt_version": version("dlt"), "how": f"{METHODS[method]}; {SAME_COLUMNS}",
            "method": method, "run_seconds": answer.get("run_seconds"),
            "error": answer.get("error"), "columns": found["columns"],
            "notes": "; ".join(found["notes"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, required=True)
    parser.add_argument("--dataset", choices=("people", "wide"), required=True)
    parser.add_argument("--url", required=True, help="postgresql://user@host:port/db")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--method", choices=sorted(METHODS), default="pandas")
    args = parser.parse_args(argv)
    # dlt sends anonymous usage telemetry by default; this machine has no internet, and
    # a blocked send must not count in the figure.
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    result = dlt_peer(args.file, args.dataset, args.url, args.timeout, args.method)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
