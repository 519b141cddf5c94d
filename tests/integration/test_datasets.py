"""Datasets end to end: declared in TOML, routed by subfolder, typed, checked, loaded and
served, on the real services, broker and database (examples/chute.toml)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from conftest import SAMPLE
from harness import REPO, Environment, Services, running_stack, wait_until

EXAMPLES = REPO / "examples"
DATASETS = EXAMPLES / "chute.toml"
ORDERS = "orders/orders-2024-06-01.csv"
READINGS = "readings/2024/june/readings-2024-06-01.csv"  # readings/**/*.csv: any depth


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
          ) -> Iterator[tuple[Environment, Services]]:
    with running_stack(tmp_path_factory.mktemp("datasets"), request,
                       CHUTE_DATASETS=str(DATASETS)) as (environment, services):
        environment.drop(ORDERS, (EXAMPLES / "orders" / "orders-2024-06-01.csv").read_bytes())
        environment.drop(READINGS,
                         (EXAMPLES / "readings" / "readings-2024-06-01.csv").read_bytes())
        environment.drop("sample.csv", SAMPLE)
        environment.drop("misc/notes.csv", b"a,b\n1,2\n")
        yield environment, services


def final(environment: Environment, name: str) -> dict[str, Any]:
    return environment.wait_final(name, 60)


def rejects(environment: Environment, file_id: str) -> list[tuple[int, str]]:
    items = environment.get(f"/files/{file_id}/rejects").json()["items"]
    return [(item["line"], item["reason"]) for item in items]


def test_each_file_goes_to_its_dataset_and_counts_add_up(
        stack: tuple[Environment, Services]) -> None:
    environment, _ = stack
    outcomes = {name: final(environment, name) for name in (ORDERS, READINGS, "sample.csv")}

    assert {name: (o["state"], o["dataset"], o["rows_total"], o["rows_loaded"],
                   o["rows_rejected"]) for name, o in outcomes.items()} == {
        ORDERS: ("loaded", "orders", 6, 3, 3),
        READINGS: ("loaded", "readings", 6, 3, 3),
        "sample.csv": ("loaded", "people", 15, 15, 0),
    }
    # Subfolders come back in archive/, as they were in the inbox.
    assert (environment.data_dir / "archive" / READINGS).is_file()
    assert (environment.data_dir / "archive" / ORDERS).is_file()


def test_a_value_that_breaks_a_rule_rejects_its_row_naming_column_and_value(
        stack: tuple[Environment, Services]) -> None:
    environment, _ = stack
    orders, readings = final(environment, ORDERS), final(environment, READINGS)

    assert rejects(environment, orders["file_id"]) == [
        (4, 'amount: "-3.00" is less than the minimum 0.00'),
        (5, 'ordered_at: "31/06/2024 12:00" does not match the format "%d/%m/%Y %H:%M"'),
        (6, 'status: "refunded" is not one of "new", "paid", "shipped"'),
    ]
    assert rejects(environment, readings["file_id"]) == [
        (5, 'taken_on: "2024-06-31" is not a valid date'),
        (6, 'sensor: "not-a-sensor" is not a uuid'),
        (7, 'temperature: "99.9" is out of range -90.0..60.0; humidity: "120" is out of '
            'range 0..100; site: "bergen" does not match the pattern "[A-Z]{3}-[0-9]{2}"'),
    ]


def test_rows_are_served_typed_in_arrival_order(stack: tuple[Environment, Services]) -> None:
    environment, _ = stack
    final(environment, ORDERS)
    page = environment.get("/datasets/orders/rows").json()

    assert page["next_cursor"] is None
    assert [{k: v for k, v in row.items() if k != "id"} for row in page["items"]] == [
        # numeric as a string; a timestamptz read in Europe/London (BST), served in UTC
        {"order_id": 1001, "customer": "Ada Lovelace", "amount": "19.99",
         "ordered_at": "2024-06-01T08:15:00+00:00", "status": "paid", "paid": True},
        {"order_id": 1002, "customer": "Grace Hopper", "amount": "5.50",
         "ordered_at": "2024-06-01T09:02:00+00:00", "status": "new", "paid": False},
        {"order_id": 1006, "customer": "Edsger Dijkstra", "amount": "7.25",
         "ordered_at": None, "status": "new", "paid": None},
    ]
    readings = environment.get("/datasets/readings/rows").json()["items"]
    assert [(r["taken_at"], r["temperature"], r["humidity"]) for r in readings] == [
        ("2024-06-01T00:00:00", 14.5, 81), ("2024-06-01T00:10:00", 14.25, None),
        ("2024-06-01T00:00:00", None, 77)]  # "NA" is the dataset's null


@pytest.mark.parametrize(("query", "order_ids"), [
    ({"customer": "Ada Lovelace"}, [1001]),
    ({"status": "new"}, [1002, 1006]),
    ({"min_ordered_at": "2024-06-01T09:00:00Z"}, [1002]),
    ({"max_ordered_at": "2024-06-01T10:00:00+01:00"}, [1001]),  # 09:00 UTC
    ({"min_ordered_at": "2024-06-01T10:00"}, [1002]),  # no offset: the column's London
    ({"min_order_id": "1002", "max_amount": "10"}, [1002, 1006]),
    ({"status": "new", "customer": "Grace Hopper"}, [1002]),
    ({"customer": "nobody"}, []),
])
def test_rows_filter_by_declared_columns_with_typed_values(
        stack: tuple[Environment, Services], query: dict[str, str], order_ids: list[int]
) -> None:
    environment, _ = stack
    final(environment, ORDERS)
    items = environment.get("/datasets/orders/rows", params=query).json()["items"]

    assert [row["order_id"] for row in items] == order_ids


@pytest.mark.parametrize(("query", "message"), [
    ({"amount": "5"}, "unknown parameter \"amount\""),  # not a filter: no equality on it
    ({"min_status": "a"}, "unknown parameter \"min_status\""),  # text is not ordered
    ({"min_order_id": "x"}, 'min_order_id: "x" is not a whole number'),
    ({"min_ordered_at": "yesterday"}, "min_ordered_at: "),
])
def test_unknown_filters_and_bad_values_are_400(stack: tuple[Environment, Services],
                                                query: dict[str, str], message: str) -> None:
    environment, _ = stack
    answer = environment.get("/datasets/orders/rows", params=query)

    assert answer.status_code == 400
    assert answer.json()["error"]["message"].startswith(message)


def test_pages_cover_every_row_once(stack: tuple[Environment, Services]) -> None:
    environment, _ = stack
    final(environment, READINGS)
    whole = environment.get("/datasets/readings/rows").json()["items"]
    pages, cursor = [], None
    while True:
        params = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = environment.get("/datasets/readings/rows", params=params).json()
        pages += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break

    assert pages == whole and len(whole) == 3
    other = environment.get("/datasets/orders/rows", params={"cursor": cursor or ""})
    assert other.status_code == 400  # an empty cursor; and another listing's is refused


def test_datasets_route_and_files_by_dataset(stack: tuple[Environment, Services]) -> None:
    environment, _ = stack
    for name in (ORDERS, READINGS, "sample.csv"):
        final(environment, name)
    listed = {d["name"]: d for d in environment.get("/datasets").json()["items"]}

    assert list(listed) == ["orders", "readings", "people"]  # matching order
    assert (listed["orders"]["table"], listed["orders"]["key"], listed["orders"]["rows"]) == (
        "orders", [], 3)
    assert listed["orders"]["columns"][2] == {"name": "amount", "type": "numeric(12,2)",
                                              "required": False, "filter": False}
    assert listed["people"]["rows"] == 15
    files = environment.get("/files", params={"dataset": "readings"}).json()["items"]
    assert [f["name"] for f in files] == [READINGS]


def test_a_file_no_dataset_matches_is_quarantined_with_the_declared_patterns(
        stack: tuple[Environment, Services]) -> None:
    environment, _ = stack
    outcome = final(environment, "misc/notes.csv")

    assert (outcome["state"], outcome["dataset"]) == ("quarantined", None)
    assert outcome["error"] == (
        "no dataset matches misc/notes.csv (declared: orders: orders/*.csv, orders-*.csv; "
        "readings: readings/**/*.csv; people: *.csv)")
    assert (environment.data_dir / "quarantine" / "misc" / "notes.csv").is_file()


# --- start-up: bad declarations and declaration changes ------------------------------

def start(environment: Environment, service: str, datasets: Path, timeout: float = 60
          ) -> subprocess.CompletedProcess[str]:
    """Run one service until it exits (a refusal) or `timeout`; its output."""
    env = {**environment.env, "CHUTE_DATASETS": str(datasets)}
    return subprocess.run([sys.executable, "-m", service], cwd=REPO, env=env, text=True,
                          capture_output=True, timeout=timeout)


def held_lines(environment: Environment, service: str, datasets: Path) -> list[str]:
    """Start one service on `datasets`, wait until it consumes (it runs on, a held
    dataset or not), stop it: the lines it wrote that are not JSON logs."""
    services = Services(environment)
    process = services.start(service, CHUTE_DATASETS=str(datasets))
    log = next(environment.logs.glob(f"*-{service}.log"))
    try:
        wait_until(lambda: '"consuming"' in log.read_text(), 60,
                   what=f"the {service} to run")
        assert process.poll() is None
    finally:
        services.stop_all()
    lines = log.read_text().splitlines()
    log.unlink()
    return [line for line in lines if not line.startswith("{")]


@pytest.mark.parametrize(("toml", "message"), [
    ("[datasets.x\n", "not valid TOML"),
    ('[datasets.x]\nmatch = "x/*.csv"\ncolumns.a = { type = "money" }\n',
     'datasets.x.columns.a.type: unknown type "money"'),
    ('[datasets.x]\nmatch = "x/*.csv"\nfilters = ["b"]\ncolumns.a = { type = "text" }\n',
     "datasets.x.filters: 'b' is not a column of the dataset"),
    ('[datasets.x]\nmatch = "x/*.csv"\ntable = "people"\ncolumns.a = { type = "text" }\n',
     "datasets.x.table: 'people' is the built-in people dataset's table"),
    ('[datasets.x]\nmatch = "x/*.csv"\ncolumns.a = { type = "text", pattern = "(" }\n',
     "datasets.x.columns.a.pattern:"),
    ('[datasets.x]\nmatch = "x/*.csv"\ncolumns.a = { type = "date", format = "day" }\n',
     "datasets.x.columns.a.format:"),
    ('[datasets.x]\nmatch = "x/*.csv"\ncolumns.a = { type = "text", sise = 3 }\n',
     "datasets.x.columns.a: Object contains unknown field `sise`"),
    ('[datasets.x]\nmatch = "x/*.csv"\ncolumns.a = { type = "integer", min = "z" }\n',
     "datasets.x.columns.a.min:"),
])
def test_a_bad_datasets_file_stops_start_up_with_one_line(tmp_path: Path, toml: str,
                                                          message: str) -> None:
    environment = Environment(tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    try:
        result = start(environment, "loader", bad)
    finally:
        environment.cleanup()

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr  # one line, never a traceback
    assert lines[0].startswith(f"chute loader: configuration error: {bad}: ")
    assert message in lines[0], lines[0]


def test_declaration_changes_add_what_is_safe_and_refuse_the_rest(tmp_path: Path) -> None:
    environment = Environment(tmp_path)
    first = tmp_path / "first.toml"
    first.write_text('[datasets.things]\nmatch = "things/*.csv"\nfilters = ["name"]\n'
                     '[datasets.things.columns]\nname = { type = "text", required = true }\n'
                     'size = { type = "integer" }\n')
    chute = [str(Path(sys.executable).parent / "chute"), "datasets"]
    try:
        # Before any service ran: what start-up would do, and nothing done.
        plan = subprocess.run(chute, env={**environment.env, "CHUTE_DATASETS": str(first)},
                              text=True, capture_output=True, timeout=60)
        assert plan.returncode == 0, plan.stderr
        assert "would create table things (name, size)" in " ".join(plan.stdout.split())

        services = Services(environment)
        services.start("api", CHUTE_DATASETS=str(first))
        services.wait_for_api()
        services.stop_all()
        assert columns(environment, "things") == [
            ("id", "uuid", "NO"), ("name", "text", "NO"), ("size", "integer", "YES"),
            ("file_seq", "bigint", "NO"), ("line", "bigint", "NO")]

        # A new optional column and a new filter: added at start.
        grown = tmp_path / "grown.toml"
        grown.write_text(first.read_text().replace('filters = ["name"]',
                                                   'filters = ["name", "seen"]')
                         + 'seen = { type = "date" }\n')
        plan = subprocess.run(chute, env={**environment.env, "CHUTE_DATASETS": str(grown)},
                              text=True, capture_output=True, timeout=60)
        assert "add column seen date" in " ".join(plan.stdout.split())
        services = Services(environment)
        services.start("api", CHUTE_DATASETS=str(grown))
        services.wait_for_api()
        services.stop_all()
        assert columns(environment, "things")[-1] == ("seen", "date", "YES")
        assert index_columns(environment, "things_filters") == ["name", "seen"]

        # A type changed: the dataset is held, with one line naming dataset, column,
        # table, file and the command that rebuilds it; the service runs on.
        changed = tmp_path / "changed.toml"
        changed.write_text(grown.read_text().replace('size = { type = "integer" }',
                                                     'size = { type = "text" }'))
        assert held_lines(environment, "loader", changed) == [
            "chute loader: dataset held: dataset things: table things: column size: the "
            'table has integer, the file says text (run "chute rebuild things")']
        plan = subprocess.run(chute, env={**environment.env, "CHUTE_DATASETS": str(changed)},
                              text=True, capture_output=True, timeout=60)
        assert plan.returncode == 1
        assert "the table has integer" in " ".join(plan.stdout.split())
        assert "rebuild" in plan.stdout  # the table wraps the line: its words are there

        # A column removed from the file: held; the table keeps its data.
        removed = tmp_path / "removed.toml"
        removed.write_text(grown.read_text().replace('size = { type = "integer" }\n', ""))
        [line] = held_lines(environment, "transformer", removed)
        assert "column size: the table has it, the file does not declare it" in line
        assert columns(environment, "things")[2] == ("size", "integer", "YES")
    finally:
        environment.cleanup()


def columns(environment: Environment, table: str) -> list[tuple[str, str, str]]:
    return environment.sql(
        """SELECT column_name, data_type, is_nullable FROM information_schema.columns
           WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position""",
        (table,))


def index_columns(environment: Environment, index: str) -> list[str]:
    return [row[0] for row in environment.sql(
        """SELECT a.attname FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
           CROSS JOIN unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
           WHERE x.relname = %s ORDER BY k.ord""", (index,))]


# --- chute infer, round trip ----------------------------------------------------------

def test_inferred_declaration_loads_its_file_without_rejects(tmp_path: Path) -> None:
    """infer, load, compare with what the file says."""
    rows = [["Invoice No", "Issued", "Due At", "Total (EUR)", "Paid?", "Customer ID", "Note",
             "Pickup"]]
    for n in range(1, 41):
        rows.append([str(1000 + n), f"2024-03-{n % 28 + 1:02d}",
                     f"2024-04-{n % 28 + 1:02d}T12:{n % 60:02d}:00+02:00", f"{n * 12.5:.2f}",
                     "yes" if n % 3 else "no", f"00000000-0000-4000-8000-{n:012d}",
                     "" if n % 4 else f"note {n}", f"{6 + n % 12}:{n % 4 * 15:02d}"])
    source = tmp_path / "invoices-2024-03.csv"
    with source.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    declaration = subprocess.run([str(Path(sys.executable).parent / "chute"), "infer",
                                  str(source)], text=True, capture_output=True, timeout=60)
    assert declaration.returncode == 0, declaration.stderr
    text = declaration.stdout
    assert 'invoice_no = { type = "integer", header = "Invoice No", required = true }' in text
    assert 'issued = { type = "date", required = true }' in text  # matched ignoring case
    assert 'due_at = { type = "timestamptz", header = "Due At", required = true }' in text
    assert 'total_eur = { type = "numeric", header = "Total (EUR)", required = true }' in text
    assert 'paid = { type = "boolean", header = "Paid?", required = true }' in text
    assert 'customer_id = { type = "uuid", header = "Customer ID", required = true }' in text
    assert 'note = { type = "text" }' in text
    assert 'pickup = { type = "time", required = true }' in text
    assert '[datasets.invoices]\nmatch = ["invoices/*.csv"]' in text
    toml = tmp_path / "chute.toml"
    toml.write_text(text.replace('match = ["invoices/*.csv"]',
                                 'match = ["invoices/*.csv"]\nfilters = ["pickup"]'))

    environment = Environment(tmp_path / "stack", CHUTE_DATASETS=str(toml))
    services = Services(environment)
    try:
        services.start_all()
        environment.drop(f"invoices/{source.name}", source.read_bytes())
        outcome = environment.wait_final(f"invoices/{source.name}", 60)
        assert (outcome["state"], outcome["rows_loaded"], outcome["rows_rejected"]) == (
            "loaded", 40, 0)
        loaded = environment.sql(
            "SELECT invoice_no, issued::text, due_at, total_eur::text, paid, "
            "customer_id::text, note, pickup::text FROM invoices ORDER BY line")
        served = environment.get("/datasets/invoices/rows",
                                 params={"min_pickup": "16:30:00", "limit": "100"}).json()
        refused = environment.get("/datasets/invoices/rows", params={"min_pickup": "25:00"})
    finally:
        services.stop_all()
        environment.cleanup()
    expected = [(int(r[0]), r[1], datetime.fromisoformat(r[2]), r[3], r[4] == "yes", r[5],
                 r[6] or None, f"{int(r[7].split(':')[0]):02d}:{r[7].split(':')[1]}:00")
                for r in rows[1:]]
    assert loaded == expected
    late = [(r[0], r[-1]) for r in expected if r[-1] >= "16:30:00"]
    assert late and [(item["invoice_no"], item["pickup"]) for item in served["items"]] == late
    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == 'min_pickup: "25:00" is not a valid time'


def test_infer_refuses_a_file_without_a_header(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    result = subprocess.run([str(Path(sys.executable).parent / "chute"), "infer", str(empty)],
                            text=True, capture_output=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip() == f"chute: {empty}: no header to read column names from"

