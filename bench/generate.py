"""A realistic, seeded people file: `python -m bench.generate --rows N OUT.csv`.

Real exports are not clean: names carry accents, locations carry commas (so fields are
quoted), a few values need trimming, and a few rows are broken. The file mixes all of
that in fixed proportions, drawn from a seeded generator so that every run of the
benchmark loads the same bytes. The generator counts what the pipeline should make of
the file (data rows, rejects), so the benchmark can check the load, not only time it.

Names and places have the cardinality of real data (bench.names: tens of thousands of
distinct last names, a few common and most rare): a small fixed pool would keep the
filter index small and hot and hide most of what indexing costs.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.names import REAL_LAST, first_names, last_names, places

BAD_AGES = ("abc", "-4", "151", "", "4O", "12.5", "1e3", "two")

# Shares of data rows, cumulative thresholds on one uniform draw per row.
SHARES = (
    ("bad_age", 0.0005),
    ("empty_name", 0.0005),
    ("wrong_fields", 0.0005),
    ("messy", 0.004),  # valid after cleaning: extra spaces, " 42 ", "42.0"
    ("comma_name", 0.01),  # "Last, First" style, quoted
    ("quoted_quote", 0.0005),  # a name with "" inside a quoted field
    ("multiline", 0.00005),  # a line break inside a quoted location
)
UNCLEAN = ("bad_age", "empty_name", "wrong_fields", "messy")  # left out of a clean file
BLANK_LINE_EVERY = 100_000  # a blank line now and then: skipped, not counted


@dataclass(frozen=True)
class Generated:
    path: Path
    rows: int  # data records (what rows_total must be)
    rejects: int  # records the cleaning rules must reject
    size: int  # bytes

    @property
    def loaded(self) -> int:
        return self.rows - self.rejects


def quote(value: str) -> str:
    """RFC 4180: quote a field holding a comma, quote or line break."""
    if "," in value or '"' in value or "\n" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


CHUNK = 50_000  # rows written (and names drawn) at a time


def generate(path: Path, rows: int, seed: int = 7, clean: bool = False) -> Generated:
    """Write `rows` data records (plus header and a few blank lines) to `path`; `clean`
    leaves out the rows to reject and the messy values (a peer's best case)."""
    rng = random.Random(seed)
    draws = random.Random(seed + 1)  # names and places, drawn a chunk at a time
    firsts, lasts, towns = first_names(), last_names(), places()
    thresholds = []
    total = 0.0
    for kind, share in SHARES:
        total += share
        thresholds.append((total, kind))
    rejects = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write("fullname,age,location\n")
        for chunk_start in range(0, rows, CHUNK):
            count = min(CHUNK, rows - chunk_start)
            chunk = zip(firsts.draw(draws, count), lasts.draw(draws, count),
                        towns.draw(draws, count), strict=True)
            lines: list[str] = []
            for n, (first_name, last_name, location) in enumerate(chunk, chunk_start + 1):
                name = f"{first_name} {last_name}"
                age = str(rng.randrange(0, 100))
                draw = rng.random()
                kind = next((k for limit, k in thresholds if draw < limit), "plain")
                if clean and kind in UNCLEAN:
                    kind = "plain"
                line = None
                if kind == "bad_age":
                    age = rng.choice(BAD_AGES)
                    rejects += 1
                elif kind == "empty_name":
                    name = rng.choice(("", "   "))
                    rejects += 1
                elif kind == "wrong_fields":
                    rejects += 1
                    extra = rng.random() < 0.5
                    line = f"{quote(name)},{age}" + (f",{quote(location)},extra\n" if extra
                                                     else "\n")
                elif kind == "messy":
                    name = f"  {name.replace(' ', '   ')} "
                    age = rng.choice((f" {age} ", f"{age}.0"))
                elif kind == "comma_name":
                    name = f"{last_name}, {first_name}"
                elif kind == "quoted_quote":
                    name = f'{first_name} "{rng.choice(REAL_LAST)}" {last_name}'
                elif kind == "multiline":
                    location = (location.replace(", ", "\n") if ", " in location
                                else location + "\nUSA")
                lines.append(line or f"{quote(name)},{age},{quote(location)}\n")
                if n % BLANK_LINE_EVERY == 0:
                    lines.append("\n")  # skipped, not counted
            out.write("".join(lines))
    return Generated(path, rows, rejects, path.stat().st_size)


def cli(make: Callable[[Path, int, int], Generated], seed: int, doc: str) -> None:
    """A generator's command line: OUT, --rows, --seed; says what it wrote."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=seed)
    args = parser.parse_args()
    made = make(args.out, args.rows, args.seed)
    print(f"{made.path}: {made.rows} rows, {made.rejects} to reject, {made.size} bytes")


def main() -> None:
    cli(generate, seed=7, doc=__doc__)


if __name__ == "__main__":
    main()
