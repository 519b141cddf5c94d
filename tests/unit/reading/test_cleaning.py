"""Header and row rules: every rule and message of the public contract, plus properties.

Run on the built-in people dataset, whose rules INTERFACE.md fixes word for word.
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chute.datasets.declarations import load
from chute.errors import HeaderError
from chute.reading import cleaning
from chute.reading.cleaning import Layout, clean_row

PEOPLE = load(None)["people"]
TEXT_MAX = 500  # the people columns' max_length


def Columns(fullname: int, age: int, location: int, count: int) -> Layout:  # noqa: N802
    """Where people's columns are: first and last name both come from fullname."""
    return Layout(PEOPLE, count, (fullname, fullname, age, location))


def CleanRow(*values: object) -> tuple[object, ...]:  # noqa: N802
    return values


def find_columns(header: list[str]) -> Layout:
    return cleaning.find_columns(header, PEOPLE)


COLS = Columns(fullname=0, age=1, location=2, count=3)
NO_HEADER = "no header: expected columns fullname, age, location"
# Property tests use deadline=None: a busy machine must not fail them; speed is not tested.


# --- find_columns ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (["fullname", "age", "location"], Columns(0, 1, 2, 3)),
        ([" Location ", "AGE", "FullName"], Columns(2, 1, 0, 3)),
        (["id", "\tfullname\t", "notes", "age ", " LOCATION", "x"], Columns(1, 3, 4, 6)),
        (["fullname", "age", "location", "", ""], Columns(0, 1, 2, 5)),
        (["\u00a0FULLNAME\u3000", "Age", "location"], Columns(0, 1, 2, 3)),  # Unicode spaces
    ],
)
def test_find_columns(header: list[str], expected: Columns) -> None:
    assert find_columns(header) == expected


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ([], NO_HEADER),
        ([""], NO_HEADER),
        (["", " ", "\t"], NO_HEADER),
        (["Ann Smith", "42", "Oslo"], NO_HEADER),  # data where the header should be
        (["full name", "ages", "locations"], NO_HEADER),
        (["fullname", "location"], "missing required column: age"),
        (["location", "age"], "missing required column: fullname"),
        (["fullname", "age"], "missing required column: location"),
        (["fullname"], "missing required columns: age, location"),
        (["location", "x", "age"], "missing required column: fullname"),
        (["age"], "missing required columns: fullname, location"),
        (["location"], "missing required columns: fullname, age"),
        (["fullname", "age", "location", "AGE"], "duplicate column: age"),
        (["fullname", " Fullname ", "age", "location"], "duplicate column: fullname"),
        (["location", "fullname", "age", "LOCATION"], "duplicate column: location"),
        (["age", "age"], "duplicate column: age"),  # duplicate reported before missing
    ],
)
def test_find_columns_errors(header: list[str], message: str) -> None:
    with pytest.raises(HeaderError) as info:
        find_columns(header)
    assert str(info.value) == message


def test_header_error_is_a_value_error() -> None:
    assert issubclass(HeaderError, ValueError)


_REQUIRED = ["fullname", "age", "location"]
_extra_name = st.text(max_size=12).filter(lambda s: s.strip().lower() not in _REQUIRED)
_space = st.sampled_from(["", " ", "  ", "\t", "\u00a0", "\u3000"])


@st.composite
def _headers(draw: st.DrawFn) -> tuple[list[str], dict[str, int]]:
    """A header with the required names in any order/case/padding among extra columns."""
    names = draw(st.permutations(_REQUIRED))
    extras = draw(st.lists(_extra_name, max_size=5))
    slots = draw(st.permutations(range(len(names) + len(extras))))
    header = [""] * len(slots)
    where = {}
    for name, slot in zip(names, slots[: len(names)], strict=True):
        cased = "".join(c.upper() if draw(st.booleans()) else c for c in name)
        header[slot] = draw(_space) + cased + draw(_space)
        where[name] = slot
    for extra, slot in zip(extras, slots[len(names) :], strict=True):
        header[slot] = extra
    return header, where


@settings(deadline=None)
@given(_headers())
def test_find_columns_any_case_space_order_and_extras(
    case: tuple[list[str], dict[str, int]],
) -> None:
    header, where = case
    assert find_columns(header) == Columns(
        where["fullname"], where["age"], where["location"], len(header)
    )


# --- clean_row: valid rows ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (["Ann Smith", "42", "Oslo"], ("Ann", "Smith", 42, "Oslo")),
        (["  Ann   Mary\tSmith ", " 25 ", "  New   York "], ("Ann", "Mary Smith", 25, "New York")),
        (["Cher", "0", "LA"], ("Cher", None, 0, "LA")),
        (["\u3000Zoë\u00a0Ünal\u2028", "150", "São\tPaulo"], ("Zoë", "Ünal", 150, "São Paulo")),
        (["Ann\nSmith", "1", "a\r\nb"], ("Ann", "Smith", 1, "a b")),
        (["Ann\x1cSmith", "1", "a\x85b"], ("Ann", "Smith", 1, "a b")),  # Unicode whitespace
        (["O'Neil-Smith Jr.", "99", "St. John's"], ("O'Neil-Smith", "Jr.", 99, "St. John's")),
    ],
)
def test_clean_row_valid(fields: list[str], expected: tuple[str, str | None, int, str]) -> None:
    result = clean_row(fields, COLS)
    assert type(result) is tuple
    assert result == CleanRow(*expected)


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        ("25", 25),
        (" 25 ", 25),
        ("\t25\n", 25),
        ("25.0", 25),
        ("25.", 25),
        ("25.000", 25),
        ("025", 25),
        ("000", 0),
        ("+25", 25),
        ("+025.00", 25),
        ("0.0", 0),
        ("-0", 0),  # a whole number, and it is in range
        ("150", 150),
        ("150.0", 150),
        ("0000000000000000000000000000000000000000000000000150", 150),
    ],
)
def test_clean_row_age_forms(age: str, expected: int) -> None:
    result = clean_row(["Ann", age, "Oslo"], COLS)
    assert result == CleanRow("Ann", None, expected, "Oslo")


def test_clean_row_every_age_in_range() -> None:
    for n in range(151):
        for text in (str(n), f" {n} ", f"{n}.0", f"+{n}", f"0{n}"):
            assert clean_row(["A", text, "B"], COLS) == CleanRow("A", None, n, "B")


def test_clean_row_uses_column_positions_and_ignores_extras() -> None:
    columns = Columns(fullname=2, age=0, location=3, count=5)
    fields = ["30", "extra", " Ann  Smith ", "Oslo", ""]
    assert clean_row(fields, columns) == CleanRow("Ann", "Smith", 30, "Oslo")


# --- clean_row: reasons ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ([], "expected 3 fields, found 0"),
        (["Ann", "1"], "expected 3 fields, found 2"),
        (["Ann", "1", "Oslo", ""], "expected 3 fields, found 4"),
        (["", "", "", "", "", ""], "expected 3 fields, found 6"),
    ],
)
def test_clean_row_field_count(fields: list[str], reason: str) -> None:
    assert clean_row(fields, COLS) == reason


def test_clean_row_field_count_uses_header_count() -> None:
    assert clean_row(["a", "1", "b"], Columns(0, 1, 2, 5)) == "expected 5 fields, found 3"


@pytest.mark.parametrize("name", ["", " ", "  \t ", "\n", "\u3000\u2028"])
def test_clean_row_empty_fullname(name: str) -> None:
    assert clean_row([name, "30", "Oslo"], COLS) == "fullname: is empty"


@pytest.mark.parametrize("location", ["", " ", "\t\r\n", "\u00a0"])
def test_clean_row_empty_location(location: str) -> None:
    assert clean_row(["Ann", "30", location], COLS) == "location: is empty"


def test_clean_row_text_of_the_maximum_length_is_kept() -> None:
    name = "A" * 250 + " " + "é" * (TEXT_MAX - 251)  # 500 characters, more bytes
    place = "\U0001f600" * TEXT_MAX  # 4 bytes each: the most a btree entry must hold
    assert clean_row([name, "30", place], COLS) == CleanRow(
        "A" * 250, "é" * (TEXT_MAX - 251), 30, place)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (["x" * (TEXT_MAX + 1), "30", "Oslo"], "fullname: is longer than 500 characters"),
        (["Ann", "30", "y" * 300_000], "location: is longer than 500 characters"),
        # Measured after trimming and collapsing: 251 one-letter words are 501 characters.
        (["Ann", "30", "  " + "a  " * 251 + "  "], "location: is longer than 500 characters"),
        (["x" * 501, "abc", ""],
         'fullname: is longer than 500 characters; age: "abc" is not a whole number; '
         "location: is empty"),
    ],
)
def test_clean_row_too_long_text(fields: list[str], reason: str) -> None:
    assert clean_row(fields, COLS) == reason


def test_clean_row_padding_does_not_count_towards_the_length() -> None:
    padded = " " * 1000 + "a" * TEXT_MAX + "\t" * 1000
    assert clean_row([padded, "1", padded], COLS) == CleanRow("a" * TEXT_MAX, None, 1,
                                                              "a" * TEXT_MAX)


@pytest.mark.parametrize(
    ("age", "reason"),
    [
        ("", "age: is empty"),
        ("   ", "age: is empty"),
        ("\t\n", "age: is empty"),
        ("abc", 'age: "abc" is not a whole number'),
        (" abc ", 'age: "abc" is not a whole number'),  # shown trimmed
        ("25.5", 'age: "25.5" is not a whole number'),
        ("25.01", 'age: "25.01" is not a whole number'),
        ("1e1", 'age: "1e1" is not a whole number'),
        ("٣", 'age: "٣" is not a whole number'),  # Arabic-Indic digit
        ("１２", 'age: "１２" is not a whole number'),  # fullwidth digits
        ("²", 'age: "²" is not a whole number'),
        ("2 5", 'age: "2 5" is not a whole number'),
        ("25.0.0", 'age: "25.0.0" is not a whole number'),
        ("+", 'age: "+" is not a whole number'),
        (".0", 'age: ".0" is not a whole number'),
        (".", 'age: "." is not a whole number'),
        ("--5", 'age: "--5" is not a whole number'),
        ("+-5", 'age: "+-5" is not a whole number'),
        ("0x10", 'age: "0x10" is not a whole number'),
        ("25,0", 'age: "25,0" is not a whole number'),
        ("1_0", 'age: "1_0" is not a whole number'),
        ("NaN", 'age: "NaN" is not a whole number'),
        ("-5", 'age: "-5" is out of range 0..150'),
        ("-5.0", 'age: "-5.0" is out of range 0..150'),
        ("151", 'age: "151" is out of range 0..150'),
        ("151.0", 'age: "151.0" is out of range 0..150'),
        ("+1000", 'age: "+1000" is out of range 0..150'),
        ("00151", 'age: "00151" is out of range 0..150'),
        ('a"b', 'age: "a\\"b" is not a whole number'),  # quotes escaped
        ("a\nb", 'age: "a\\nb" is not a whole number'),  # line breaks escaped
        ("a\\b", 'age: "a\\\\b" is not a whole number'),
        ("x" * 40, 'age: "' + "x" * 40 + '" is not a whole number'),
        ("x" * 41, 'age: "' + "x" * 40 + '…" is not a whole number'),
        ("9" * 5000, 'age: "' + "9" * 40 + '…" is out of range 0..150'),  # no int() blow-up
    ],
)
def test_clean_row_age_reasons(age: str, reason: str) -> None:
    assert clean_row(["Ann", age, "Oslo"], COLS) == reason


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (["", "x", ""], 'fullname: is empty; age: "x" is not a whole number; location: is empty'),
        (["", "1", " "], "fullname: is empty; location: is empty"),
        ([" ", "25.5", "Oslo"], 'fullname: is empty; age: "25.5" is not a whole number'),
        (["Ann", "", ""], "age: is empty; location: is empty"),
        (["", "200", "Oslo"], 'fullname: is empty; age: "200" is out of range 0..150'),
    ],
)
def test_clean_row_reports_every_bad_field_in_order(fields: list[str], reason: str) -> None:
    assert clean_row(fields, COLS) == reason


# --- clean_row: properties ------------------------------------------------------------------


@st.composite
def _columns_and_fields(draw: st.DrawFn) -> tuple[Columns, list[str]]:
    count = draw(st.integers(3, 6))
    name_at, age_at, location_at = draw(st.permutations(range(count)))[:3]
    # Mostly the right number of fields, so the field rules run, sometimes not.
    size = draw(st.one_of(st.just(count), st.integers(0, 8)))
    value = st.one_of(
        st.text(),
        st.sampled_from(["", " ", "25", " 25.0 ", "-1", "151", "٣", "9" * 5000]),
    )
    fields = draw(st.lists(value, min_size=size, max_size=size))
    return Columns(name_at, age_at, location_at, count), fields


@settings(deadline=None)
@given(_columns_and_fields())
def test_clean_row_never_raises(case: tuple[Columns, list[str]]) -> None:
    columns, fields = case
    result = clean_row(fields, columns)
    if isinstance(result, str):
        assert result
        assert "\n" not in result  # values in reasons are escaped
    else:
        assert type(result) is tuple
        first_name, last_name, age, location = result
        name = fields[columns.at[0]].split()
        assert first_name == name[0]
        assert last_name == (" ".join(name[1:]) or None)
        assert 0 <= age <= 150
        assert location == " ".join(fields[columns.at[3]].split())


# No NUL: PostgreSQL text cannot hold it, so the text rules reject it (and csvstream
# already refuses a record holding one; see test_clean_row_rejects_nul).
_word = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
    .filter(lambda c: not c.isspace()), min_size=1
)
_gap = st.text(st.sampled_from(" \t\n\r\x0b\x0c\x1c\x85\u00a0\u2028\u3000"), min_size=1, max_size=3)


@st.composite
def _spaced(draw: st.DrawFn) -> tuple[str, list[str]]:
    """Words joined and padded by arbitrary whitespace runs, and the words themselves."""
    words = draw(st.lists(_word, min_size=1, max_size=4))
    text = draw(st.one_of(st.just(""), _gap))
    for i, word in enumerate(words):
        text += (draw(_gap) if i else "") + word
    return text + draw(st.one_of(st.just(""), _gap)), words


@st.composite
def _age(draw: st.DrawFn) -> tuple[str, int]:
    n = draw(st.integers(0, 150))
    form = draw(st.sampled_from(["{}", "+{}", "0{}", "{}.", "{}.0", "{}.000", "+00{}.0"]))
    pad = draw(st.sampled_from(["", " ", "\t", "\u00a0"]))
    return pad + form.format(n) + pad, n


@settings(deadline=None)
@given(_spaced(), _age(), _spaced())
def test_clean_row_valid_values_are_trimmed_and_collapsed(
    name: tuple[str, list[str]], age: tuple[str, int], location: tuple[str, list[str]]
) -> None:
    (name_text, words), (age_text, n), (location_text, places) = name, age, location
    assert clean_row([name_text, age_text, location_text], COLS) == CleanRow(
        words[0], " ".join(words[1:]) or None, n, " ".join(places)
    )


def test_clean_row_rejects_nul() -> None:
    reason = 'fullname: "Ann\\u0000" contains a NUL character'
    assert clean_row(["Ann\x00", "1", "Oslo"], COLS) == reason


def test_only_plain_space_is_printable_whitespace() -> None:
    # clean_row skips " ".join(s.split()) for printable values without "  "; that is only
    # right if no whitespace character other than " " is printable.
    printable_space = [
        c for c in map(chr, range(0x110000)) if c != " " and c.isspace() and c.isprintable()
    ]
    assert printable_space == []
