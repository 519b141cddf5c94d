"""A dataset's key: declared columns, required by implication, with their own reason,
the same on the row path and the columnar path."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from chute.datasets.declarations import INDEXED_TEXT_MAX, Dataset, load
from chute.errors import DatasetsError, HeaderError
from chute.rabbitmq.messages import RowBatch
from chute.reading import copyrows
from chute.reading.cleaning import clean_row, find_columns
from chute.reading.transform import transform

DECLARATION = """
[datasets.stock]
match = ["stock/*.csv"]
key   = ["sku", "site"]

[datasets.stock.columns]
sku  = { type = "integer" }
site = { type = "text", nulls = ["NA"] }
qty  = { type = "integer" }
"""


def declare(tmp_path: Path, text: str = DECLARATION) -> Dataset:
    path = tmp_path / "chute.toml"
    path.write_text(text)
    return load(path)["stock"]


def test_key_columns_are_marked_and_need_a_value(tmp_path: Path) -> None:
    stock = declare(tmp_path)
    assert stock.key == ("sku", "site")
    assert [(c.name, c.key, c.required, c.needs_value) for c in stock.columns] == [
        ("sku", True, False, True), ("site", True, False, True), ("qty", False, False, False)]
    assert stock.required_headers == ("sku", "site")
    assert stock.column("site").rules.max_length == INDEXED_TEXT_MAX  # it is indexed


@pytest.mark.parametrize(("key", "message"), [
    ('["sku", "price"]', "datasets.stock.key: 'price' is not a column of the dataset"),
    ('["sku", "sku"]', "datasets.stock.key: names a column twice"),
])
def test_a_key_naming_a_wrong_column_stops_start_up(tmp_path: Path, key: str,
                                                    message: str) -> None:
    with pytest.raises(DatasetsError) as refused:
        declare(tmp_path, DECLARATION.replace('["sku", "site"]', key))
    assert str(refused.value) == f"{tmp_path / 'chute.toml'}: {message}"


def test_an_empty_key_value_is_a_reject_naming_the_key(tmp_path: Path) -> None:
    layout = find_columns(["sku", "site", "qty"], declare(tmp_path))
    assert clean_row(["", "A", "1"], layout) == "sku: is empty (a key column)"
    assert clean_row(["1", " NA ", ""], layout) == "site: is empty (a key column)"
    assert clean_row(["1", "A", ""], layout) == (1, "A", None)  # qty is optional


def test_a_file_without_a_key_column_is_quarantined(tmp_path: Path) -> None:
    with pytest.raises(HeaderError, match="^missing required column: site$"):
        find_columns(["sku", "qty"], declare(tmp_path))


def test_the_columnar_path_rejects_empty_keys_with_the_same_reason(tmp_path: Path) -> None:
    stock = declare(tmp_path)
    # Enough plain lines for the columnar path to take the block.
    lines = [b"%d,S%d,%d" % (n, n % 3, n) for n in range(2000)]
    lines[10], lines[500] = b",S1,5", b"7,NA,5"
    data = b"sku,site,qty\n" + b"\n".join(lines) + b"\n"
    messages = list(transform(io.BytesIO(data), stock, "f", 1,
                              hashlib.sha256(data).hexdigest(), 5000))
    batches = [m for m in messages if isinstance(m, RowBatch)]
    rejects = b"".join(b.rejects for b in batches).decode().splitlines()
    assert [r.split("\t")[1:3] for r in rejects] == [
        ["12", "sku: is empty (a key column)"], ["502", "site: is empty (a key column)"]]
    rows = copyrows.read(b"".join(b.rows for b in batches), [c.type for c in stock.columns])
    assert len(rows) == 1998
