"""Bad data, end to end: every file of tests/corpus/ and a few generated hostile files go
through the real watcher, transformer, loader and API, and each ends in the state the data
rules give it, with exactly the rows loaded and rejected (line, reason, raw) they say.

One stack serves the whole module: the files are dropped together at the start, and each
test waits for its own file (the machine is small; starting four services per file would
cost far more than the files themselves).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from harness import REPO, Environment, Services, running_stack, wait_until

CORPUS = REPO / "tests" / "corpus"
TIMEOUT = 120.0  # generous: other suites share the two cores

Row = tuple[int, str, "str | None", int, str]  # line, first_name, last_name, age, location
Reject = tuple[int, str, str]  # line, reason, raw


@dataclass(frozen=True)
class Loaded:
    rows: list[Row]
    rejects: list[Reject] = field(default_factory=list)


@dataclass(frozen=True)
class Quarantined:
    reason: str | re.Pattern[str]  # a pattern where the reason holds sizes read so far


TEXT_AFTER_QUOTE = (
    'malformed quoting: text after a closing quote (write a quote inside a field as "")')

# What each corpus file must become. tests/corpus/README.md says what each one is for.
EXPECTED: dict[str, Loaded | Quarantined] = {
    "header-any-order.csv": Loaded([  # BOM, CRLF, columns in any order, case and padding
        (2, "Ann", "Smith", 30, "Oslo"),
        (3, "Bob", "Jones", 31, "Bergen"),
    ]),
    "quoting.csv": Loaded([  # RFC 4180: commas, doubled quotes, line breaks inside quotes
        (2, "Smith,", "John", 40, "Paris, France"),
        (3, "Dwayne", '"The Rock" Johnson', 51, "Hayward"),
        (4, "Mary", "Ann Lee", 22, "Line One Line Two"),
        (7, "Quoted", "Name", 33, "Rome"),
        (9, "Ok", "After", 2, "Y"),
    ], [
        (8, TEXT_AFTER_QUOTE, '"Bad"Quote,1,X'),
    ]),
    "cleaning.csv": Loaded([  # trimming, collapsing, one-word names, age forms and range
        (2, "Ann", "Mary Smith", 25, "New York"),
        (3, "Cher", None, 25, "Los Angeles"),
        (4, "Baby", "Zero", 0, "Oslo"),
        (5, "Old", "Timer", 150, "Rome"),
        (6, "Plus", "Sign", 7, "Lima"),
        (7, "Zoë", "Ünal", 33, "São Paulo"),
        (10, "Last", "Line", 9, "No Newline"),
    ]),
    "rejects.csv": Loaded([
        (2, "Good", "Row", 20, "Oslo"),
        (12, "Good", "Again", 21, "Bergen"),
    ], [
        (3, 'age: "abc" is not a whole number', "Bad Age,abc,Oslo"),
        (4, 'age: "25.5" is not a whole number', "Half Age,25.5,Oslo"),
        (5, 'age: "-1" is out of range 0..150', "Too Young,-1,Oslo"),
        (6, 'age: "151" is out of range 0..150', "Too Old,151,Oslo"),
        (7, "fullname: is empty", ",30,Oslo"),
        (8, "location: is empty", "No Place,30,   "),
        (9, "fullname: is empty; age: is empty; location: is empty", "   ,,"),
        (10, "expected 3 fields, found 4", "Too,Many,Fields,Here"),
        (11, "expected 3 fields, found 2", "Too Few,30"),
    ]),
    "latin1.csv": Loaded([  # a latin-1 file: its ASCII rows load, the others are rejected
        (2, "Ann", "Smith", 30, "Oslo"),
        (5, "Bob", "Jones", 63, "Leeds"),
    ], [
        (3, "bytes that are not UTF-8", "Zo\ufffd \ufffdnal,41,K\ufffdln"),
        (4, "bytes that are not UTF-8", "Jos\ufffd Garc\ufffda,52,M\ufffdlaga"),
    ]),
    "nul-bytes.csv": Loaded([
        (3, "Bob", "Jones", 31, "Rome"),
    ], [
        (2, "contains a NUL byte", "Ann\u2400Smith,30,Oslo"),
        (4, "contains a NUL byte", "\u2400\u2400\u2400"),
    ]),
    "backslashes.csv": Loaded([  # COPY's special characters, in values and in raw text
        (2, "C:\\Users\\Ann", "\\N", 30, "\\\\server\\share"),
        (3, "\\.", None, 31, "\\N"),
    ], [
        (4, "expected 3 fields, found 1", "\\."),
        (5, 'age: "x\\\\y" is not a whole number', '"tab\there",x\\y,"c\r\n\\.\r\n"'),
        (8, "expected 3 fields, found 4", "back\\slash,\t32\t,x,\\t"),
    ]),
    "header-only.csv": Loaded([]),
    "stray-quote.csv": Loaded([  # a quote opened mid-file runs to the next quote
        (2, "Ann", "Smith", 30, "Oslo"),
        (6, "Ed", "Wood", 34, "Leeds"),
    ], [
        (3, TEXT_AFTER_QUOTE, 'Bob "Jones,31,"Rome\nCy Young,32,Lima\nDi Prince,33,"Paris'),
    ]),
    "unclosed-quote.csv": Loaded([
        (2, "Ann", "Smith", 30, "Oslo"),
    ], [
        (3, "malformed quoting: a quoted field is not closed by the end of the file",
         'Bob Jones,31,"Rome\nCy Young,32,Lima'),
    ]),
    "empty.csv": Quarantined("empty file (0 bytes)"),
    "whitespace-only.csv": Quarantined("whitespace only: no header and no rows"),
    "no-header.csv": Quarantined("no header: expected columns fullname, age, location"),
    "missing-column.csv": Quarantined("missing required column: age"),
    "duplicate-column.csv": Quarantined("duplicate column: location"),
    "image.csv": Quarantined("not a text file: a PNG image"),
    # Compressed: recognised by their first bytes, whatever the name says.
    "compressed.csv": Loaded([(2, "Ann", "Smith", 30, "Oslo")]),
    "truncated.csv.gz": Quarantined("gzip data ends early after 3,880 bytes"),
    "damaged.csv.zst": Quarantined(
        "zstd data is damaged (ZSTD decompress failed: Restored data doesn't match checksum)"),
    # 1.4 MB of zstd that expands to 16 GiB of rows: stopped after about 64 MiB.
    "bomb.csv.zst": Quarantined(re.compile(
        r"zstd data expands more than 200 times \(CHUTE_MAX_COMPRESSION_RATIO\): "
        r"[0-9.]+ KiB read gave [0-9.]+ MiB so far")),
    "utf16.csv": Quarantined("not UTF-8: the file is UTF-16 (save it as UTF-8)"),
    "latin1-header.csv": Quarantined("not a text file: line 1 has bytes that are not UTF-8"),
    "nul-header.csv": Quarantined("not a text file: line 1 contains a NUL byte"),
}

# Generated rather than kept in the repository: they are large or made of repetition.
HUGE = "9" * 300_000
GENERATED: dict[str, tuple[bytes, Loaded]] = {
    "huge-fields.csv": (
        b"fullname,age,location,notes\n"
        + b"Ann Smith,30,Oslo," + b"n" * 400_000 + b"\n"  # an ignored column of 400 kB
        + b"Bob Jones,31," + b"x" * 300_000 + b",\n"  # a location of 300 kB
        + b"Cy Young," + HUGE.encode() + b",Lima,\n"
        + b"Di Prince,33,Paris,",  # no final line break
        Loaded([
            (2, "Ann", "Smith", 30, "Oslo"),
            (5, "Di", "Prince", 33, "Paris"),
        ], [
            (3, "location: is longer than 500 characters",
             "Bob Jones,31," + "x" * (4096 - 13) + "…"),
            (4, 'age: "' + "9" * 40 + '…" is out of range 0..150',
             "Cy Young," + "9" * (4096 - 9) + "…"),
        ]),
    ),
    "long-line.csv": (
        b"fullname,age,location\nAnn Smith,30,Oslo\n"
        + b"Bob," + b"y" * (2 << 20) + b"\n"  # a line of 2 MiB, over the 1 MiB record limit
        + b"Cy Young,32,Lima\n",
        Loaded([
            (2, "Ann", "Smith", 30, "Oslo"),
            (4, "Cy", "Young", 32, "Lima"),
        ], [
            (3, "record longer than 1048576 bytes", "Bob," + "y" * (4096 - 4) + "…"),
        ]),
    ),
}


# Compressed copies of corpus files load exactly as the plain ones: lines and raw text
# of rejects are those of the decompressed text. Two gzip members, as `cat a.gz b.gz`.
_REJECTS = (CORPUS / "rejects.csv").read_bytes()
_CLEANING = (CORPUS / "cleaning.csv").read_bytes()
GENERATED["rejects.csv.bz2"] = (bz2.compress(_REJECTS), EXPECTED["rejects.csv"])  # type: ignore[assignment]
GENERATED["cleaning.csv.gz"] = (  # type: ignore[assignment]
    gzip.compress(_CLEANING[:100], mtime=0) + gzip.compress(_CLEANING[100:], mtime=0),
    EXPECTED["cleaning.csv"])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory,
          request: pytest.FixtureRequest) -> Iterator[tuple[Environment, Services]]:
    """One stack for the module, with every corpus and generated file dropped at once."""
    with running_stack(tmp_path_factory.mktemp("bad-data"), request) as (environment, services):
        for name in EXPECTED:
            environment.drop(name, (CORPUS / name).read_bytes())
        for name, (data, _expected) in GENERATED.items():
            environment.drop(name, data)
        yield environment, services


def outcome(environment: Environment, name: str, timeout: float = TIMEOUT) -> dict[str, Any]:
    """The file's final answer from the API, with its loaded rows and its rejects."""
    state = environment.wait_final(name, timeout)
    rows = environment.sql(
        """SELECT p.line, p.first_name, p.last_name, p.age, p.location
           FROM people p JOIN chute.files f ON f.seq = p.file_seq
           WHERE f.file_id = %s ORDER BY p.line""", (state["file_id"],))
    return {**state, "rows": rows, "rejects": rejects(environment, state["file_id"])}


def rejects(environment: Environment, file_id: str) -> list[Reject]:
    """Every reject of a file, as GET /files/{id}/rejects serves them, page by page."""
    out: list[Reject] = []
    cursor = None
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        answer = environment.get(f"/files/{file_id}/rejects", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        out += [(r["line"], r["reason"], r["raw"]) for r in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def assert_outcome(environment: Environment, name: str, data: bytes,
                   expected: Loaded | Quarantined, timeout: float = TIMEOUT) -> None:
    got = outcome(environment, name, timeout)
    if isinstance(expected, Quarantined):
        reason = expected.reason
        if isinstance(reason, re.Pattern):
            assert reason.fullmatch(got["error"] or ""), got["error"]
            reason = got["error"]
        assert (got["state"], got["error"], got["rows"], got["rejects"]) == (
            "quarantined", reason, [], [])
        assert (got["rows_total"], got["rows_loaded"], got["rows_rejected"]) == (None, None, None)
        quarantine = environment.data_dir / "quarantine"
        assert (quarantine / name).read_bytes() == data
        assert (quarantine / f"{name}.reason.txt").read_text() == reason + "\n"
        return
    assert (got["state"], got["error"]) == ("loaded", None)
    assert got["rows"] == expected.rows
    assert got["rejects"] == expected.rejects
    assert (got["rows_total"], got["rows_loaded"], got["rows_rejected"]) == (
        len(expected.rows) + len(expected.rejects), len(expected.rows), len(expected.rejects))
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert (environment.data_dir / "archive" / name).read_bytes() == data


@pytest.mark.parametrize("name", list(EXPECTED))
def test_corpus_file(stack: tuple[Environment, Services], name: str) -> None:
    environment, _services = stack
    assert_outcome(environment, name, (CORPUS / name).read_bytes(), EXPECTED[name])


@pytest.mark.parametrize("name", list(GENERATED))
def test_generated_hostile_file(stack: tuple[Environment, Services], name: str) -> None:
    environment, _services = stack
    data, expected = GENERATED[name]
    assert_outcome(environment, name, data, expected)


def test_every_corpus_file_has_an_expectation() -> None:
    assert sorted(p.name for p in CORPUS.iterdir() if p.name not in (
        "README.md", ".gitattributes")) == sorted(EXPECTED)


def _many_rows(count: int) -> tuple[bytes, list[Reject]]:
    """`count` data rows; every 9973rd has a bad age. Returns the file and its rejects."""
    lines = [b"fullname,age,location\n"]
    bad: list[Reject] = []
    for i in range(count):
        if i % 9973 == 9972:
            lines.append(b"Bad%d Row,x%d,Nowhere\n" % (i, i))
            bad.append((i + 2, f'age: "x{i}" is not a whole number', f"Bad{i} Row,x{i},Nowhere"))
        else:
            lines.append(b"First%d Last%d,%d,Town %d\n" % (i, i, i % 151, i % 50))
    return b"".join(lines), bad


def test_a_hundred_thousand_rows_with_rejects(stack: tuple[Environment, Services]) -> None:
    environment, _services = stack
    data, bad = _many_rows(100_000)
    environment.drop("many-rows.csv", data)

    got = environment.wait_final("many-rows.csv", 300)

    assert (got["state"], got["rows_total"], got["rows_loaded"], got["rows_rejected"]) == (
        "loaded", 100_000, 100_000 - len(bad), len(bad))
    assert rejects(environment, got["file_id"]) == bad
    # Every loaded row exactly: compared through a digest of all of them, in line order.
    expected = "\n".join(
        f"{i + 2}|First{i}|Last{i}|{i % 151}|Town {i % 50}"
        for i in range(100_000) if i % 9973 != 9972)
    digest = environment.sql(
        """SELECT md5(string_agg(concat_ws('|', p.line, p.first_name, p.last_name, p.age,
                                           p.location), E'\\n' ORDER BY p.line))
           FROM people p JOIN chute.files f ON f.seq = p.file_seq WHERE f.file_id = %s""",
        (got["file_id"],))
    assert digest == [(hashlib.md5(expected.encode()).hexdigest(),)]


def test_same_name_quarantined_twice_keeps_both_files(
    stack: tuple[Environment, Services],
) -> None:
    environment, _services = stack
    environment.drop("broken.csv", b"nothing useful\n")
    first = environment.wait_final("broken.csv", TIMEOUT)
    environment.drop("broken.csv", b"fullname,age\nAnn,1\n")

    second = wait_until(
        lambda: (s := environment.file_state("broken.csv"))["file_id"] != first["file_id"]
        and s["state"] == "quarantined" and s,
        TIMEOUT, what="the second broken.csv to be quarantined")

    quarantine = environment.data_dir / "quarantine"
    other = f"broken.{second['file_id'][:8]}.csv"
    assert (first["error"], second["error"]) == (
        "no header: expected columns fullname, age, location", "missing required column: location")
    assert (quarantine / "broken.csv").read_bytes() == b"nothing useful\n"
    assert (quarantine / "broken.csv.reason.txt").read_text() == first["error"] + "\n"
    assert (quarantine / other).read_bytes() == b"fullname,age\nAnn,1\n"
    assert (quarantine / f"{other}.reason.txt").read_text() == second["error"] + "\n"
