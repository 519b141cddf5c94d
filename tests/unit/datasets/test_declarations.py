"""The datasets file: what it declares, and the one line a bad one stops start-up with."""

from pathlib import Path

import pytest

from chute.datasets.declarations import load, load_text
from chute.errors import DatasetsError, HeaderError
from chute.reading.cleaning import clean_row, find_columns

TWO = """
[datasets.things]
match = ["things/*.csv", "**/things-*.CSV"]
[datasets.things.columns]
name = { type = "text", required = true }
size = { type = "integer" }
seen = { type = "date", header = " Seen On " }
"""


def test_files_go_to_the_first_dataset_whose_match_fits_their_path() -> None:
    datasets = load_text(TWO, "test")

    assert [d.name for d in datasets] == ["things", "people"]  # people comes last
    routed = {path: (d.name if (d := datasets.for_path(path)) else None) for path in (
        "things/a.csv", "things/A.CSV", "things/deep/a.csv", "x/y/things-1.csv",
        "things-1.csv", "a.csv", "A.Csv", "sub/a.csv", ".csv")}
    assert routed == {
        "things/a.csv": "things", "things/A.CSV": "things", "things/deep/a.csv": None,
        "x/y/things-1.csv": "things", "things-1.csv": "things", "a.csv": "people",
        "A.Csv": "people", "sub/a.csv": None, ".csv": "people"}


def test_a_missing_optional_column_loads_as_null() -> None:
    things = load_text(TWO, "test")["things"]
    layout = find_columns(["NAME", "other"], things)

    assert clean_row([" a  b ", "x"], layout) == ("a b", None, None)
    with pytest.raises(HeaderError, match="missing required column: name"):
        find_columns(["size", "seen on"], things)
    with pytest.raises(HeaderError, match="no header: expected columns name"):
        find_columns(["1", "2"], things)


def test_a_dataset_without_required_columns_takes_a_file_with_any_of_them() -> None:
    loose = load_text('[datasets.l]\nmatch = "l/*.csv"\ncolumns.a = { type = "text" }\n'
                      'columns.b = { type = "integer" }\n', "test")["l"]
    layout = find_columns(["b"], loose)

    assert clean_row(["7"], layout) == (None, 7)
    with pytest.raises(HeaderError, match="no header: expected columns a, b"):
        find_columns(["c"], loose)


@pytest.mark.parametrize(("toml", "message"), [
    ('[datasets.people]\nmatch = "*.csv"\ncolumns.name = { type = "text" }\n',
     "test: datasets.people: a redeclared people must keep the columns first_name, "
     "last_name, age, location"),
    ('[datasets.x]\nmatch = "x/*.csv"\nkey = ["b"]\ncolumns.a = { type = "text" }\n',
     "test: datasets.x.key: 'b' is not a column of the dataset"),
    ('[datasets.x]\nmatch = "x/*.csv"\ncolumns.line = { type = "text" }\n',
     "test: datasets.x.columns.line: 'line' is reserved"),
    ('[datasets.X]\nmatch = "x/*.csv"\ncolumns.a = { type = "text" }\n',
     "test: datasets.X: a dataset's name must be a lower-case identifier"),
    ('[datasets.x]\nmatch = "../x/*.csv"\ncolumns.a = { type = "text" }\n',
     "test: datasets.x.match: '../x/*.csv' must be a path relative to inbox/"),
    ('[datasets.x]\nmatch = "x/[a.csv"\ncolumns.a = { type = "text" }\n',
     "test: datasets.x.match: 'x/[a.csv' does not compile"),
    ('[datasets.x]\nmatch = "x/*.csv"\ndelimiter = "ab"\ncolumns.a = { type = "text" }\n',
     "test: datasets.x.delimiter: 'ab' must be one character"),
    ('[datasets.x]\nmatch = "x/*.csv"\nencoding = "klingon"\ncolumns.a = { type = "text" }\n',
     "test: datasets.x.encoding: unknown encoding 'klingon'"),
    ('[datasets.x]\nmatch = "x/*.csv"\ncolumns.a = { type = "integer", take = "first_word" }\n',
     "test: datasets.x.columns.a.take: applies to text columns only"),
    ('[datasets.x]\nmatch = "x/*.csv"\n', "test: datasets.x: Object missing required field"),
])
def test_a_bad_declaration_is_one_line_naming_the_field(toml: str, message: str) -> None:
    with pytest.raises(DatasetsError) as info:
        load_text(toml, "test")
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_a_text_filter_column_is_capped_for_its_index(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text('[datasets.x]\nmatch = "x/*.csv"\nfilters = ["a"]\n'
                    'columns.a = { type = "text" }\ncolumns.b = { type = "text" }\n')
    x = load(path)["x"]

    assert (x.column("a").rules.max_length, x.column("b").rules.max_length) == (500, None)
    assert load(path).source == str(path)


def test_a_dataset_in_another_encoding_and_delimiter_is_read_as_declared() -> None:
    import io

    from chute.reading import copyrows
    from chute.reading.transform import transform

    shop = load_text('[datasets.shop]\nmatch = "shop/*.csv"\nencoding = "latin-1"\n'
                     'delimiter = ";"\ncolumns.name = { type = "text", required = true }\n'
                     'columns.price = { type = "numeric(6,2)" }\n', "test")["shop"]
    data = "name;price\nCafé crème;3.5\n\"Thé; vert\";x\n".encode("latin-1")
    for columnar in (True, False):
        batch, done = transform(io.BytesIO(data), shop, "f", 1, "ab" * 32, 10,
                                columnar=columnar)
        types = tuple(c.type for c in shop.columns)
        rows = copyrows.read(batch.rows, types)
        assert [r[1] for r in rows] == ["Café crème"]
        assert batch.rejects.decode() == 'f\t3\tprice: "x" is not a number\t"Thé; vert";x\n'
        assert done.rows_total == 2
