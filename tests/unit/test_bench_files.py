"""The benchmark's generated files hold what their generators say: the bench checks every
load against those counts, so a count that is wrong here would fail (or, worse, pass) a
benchmark run. Both ways of reading (columnar and row by row) must agree with them."""

from __future__ import annotations

import csv
import random
import sys
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench import generate, generate_wide, names  # noqa: E402
from bench.stack import DATASETS  # noqa: E402
from chute.datasets.declarations import load  # noqa: E402
from chute.rabbitmq.messages import RowBatch  # noqa: E402
from chute.reading.transform import transform  # noqa: E402

ROWS = 6_000


def _load(path: Path, dataset: str, columnar: bool) -> tuple[int, int, Counter[str]]:
    """(records, rejects, reject reasons by column) as chute's transformer makes them."""
    rows = rejects = total = 0
    reasons: Counter[str] = Counter()
    with path.open("rb") as stream:
        for message in transform(stream, load(DATASETS)[dataset], "f", 1, "ab" * 32, 1000,
                                 columnar=columnar):
            if isinstance(message, RowBatch):
                rows += message.row_count
                rejects += message.reject_count
                for line in message.rejects.decode().splitlines():
                    reasons[line.split("\t")[2].split(":")[0]] += 1
            else:
                total = message.rows_total
    assert rows + rejects == total
    return total, rejects, reasons


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "row-by-row"])
def test_wide_file_rejects_what_the_generator_counts(tmp_path: Path, columnar: bool) -> None:
    made = generate_wide.generate(tmp_path / "wide.csv", ROWS, seed=3)
    total, rejects, reasons = _load(made.path, "wide", columnar)
    assert (total, rejects) == (made.rows, made.rejects)
    assert 0.02 * ROWS < made.rejects < 0.04 * ROWS
    declared = [c.name for c in load(DATASETS)["wide"].columns]
    assert set(reasons) == set(declared)  # every column has its bad values


@pytest.mark.parametrize("columnar", [True, False], ids=["columnar", "row-by-row"])
def test_people_file_rejects_what_the_generator_counts(tmp_path: Path, columnar: bool) -> None:
    made = generate.generate(tmp_path / "people.csv", ROWS, seed=3)
    assert _load(made.path, "people", columnar)[:2] == (made.rows, made.rejects)


def test_names_have_the_cardinality_of_real_data() -> None:
    drawn = names.last_names().draw(random.Random(1), 100_000)
    counts = Counter(drawn)
    assert len(counts) > 30_000  # most surnames are rare
    assert 0.005 < counts.most_common(1)[0][1] / len(drawn) < 0.02  # the commonest ~1%


@pytest.mark.parametrize("dataset", ["people", "wide"])
def test_a_clean_file_has_nothing_to_reject_or_clean(tmp_path: Path, dataset: str) -> None:
    """The peer's best case: every row is loaded as written, by chute and by pgloader."""
    if dataset == "people":
        made = generate.generate(tmp_path / "f.csv", ROWS, seed=3, clean=True)
    else:
        made = generate_wide.generate(tmp_path / "f.csv", ROWS, seed=3, bad_share=0.0,
                                      messy_share=0.0)
    assert made.rejects == 0
    assert _load(made.path, dataset, columnar=True)[:2] == (ROWS, 0)
    whole = {"people": [1], "wide": [0, 3, 4]}[dataset]  # the integer columns
    with made.path.open(newline="") as stream:
        records = [record for record in csv.reader(stream) if record][1:]  # no header
    assert all(value == value.strip() and "  " not in value
               for record in records for value in record)
    assert all(record[i].isdigit() for record in records for i in whole if record[i])
