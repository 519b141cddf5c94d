"""A realistic, seeded people file: `python -m bench.generate --rows N OUT.csv`.

Real exports are not clean: names carry accents, locations carry commas (so fields are
quoted), a few values need trimming, and a few rows are broken. The file mixes all of
that in fixed proportions, drawn from a seeded generator so that every run of the
benchmark loads the same bytes. The generator counts what the pipeline should make of
the file (data rows, rejects), so the benchmark can check the load, not only time it.

Beside the file it writes a "copyable" twin without the rows whose field count is
wrong and without blank lines: PostgreSQL 15's COPY stops at the first such line, and
the floor (`psql \\copy`) must load the same data otherwise.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path

FIRST_NAMES = (
    "John", "Jane", "Michael", "Emily", "David", "Sarah", "James", "Olivia", "Robert", "Emma",
    "William", "Sophia", "Daniel", "Mia", "Thomas", "Ava", "Joseph", "Isabella", "Charles",
    "Grace", "José", "María", "François", "Zoë", "Chloé", "Renée", "Søren", "Åsa", "Björn",
    "Łukasz", "Małgorzata", "Jürgen", "Dvořák", "Íñigo", "Joaquín", "Ana Lúcia", "Noémie",
    "Ülkü", "Şebnem", "Nguyễn", "Thị", "Siobhán", "Seán", "Aoife", "Ólafur", "Dagný", "Zoltán",
)
LAST_NAMES = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor",
    "Anderson", "Thomas", "Moore", "Martin", "Jackson", "White", "Harris", "Clark", "Lewis",
    "García", "Martínez", "Rodríguez", "Hernández", "López", "Müller", "Schröder", "Weiß",
    "Nowak", "Wiśniewski", "Kowalczyk", "Lefèvre", "Bélanger", "Gauthier", "Østergaard",
    "Ångström", "Þórsson", "Çelik", "Yılmaz", "Öztürk", "Trần", "Lê", "O'Brien", "O'Connor",
    "van der Berg", "de la Cruz", "Dupont-Aignan", "Ní Bhriain", "Kovács", "Novák",
)
LOCATIONS = (
    "New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia", "San Antonio",
    "San Diego", "Dallas", "San Jose", "Austin, TX", "Portland, OR", "Springfield, IL",
    "Paris, France", "Montréal, QC", "Québec", "São Paulo, Brazil", "Zürich", "München",
    "Kraków", "Łódź", "Reykjavík", "København", "Malmö", "İstanbul", "Hà Nội", "Đà Nẵng",
    "Dublin", "Cork, Ireland", "Bogotá", "Ciudad de México", "Córdoba, Argentina", "Lisboa",
    "Zaragoza", "Ålesund", "Tromsø", "Genève", "Brno", "Plzeň", "Győr",
)
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
BLANK_LINE_EVERY = 100_000  # a blank line now and then: skipped, not counted


@dataclass(frozen=True)
class Generated:
    path: Path
    copyable: Path  # the same rows minus wrong-field-count rows and blank lines, for COPY
    rows: int  # data records (what rows_total must be)
    rejects: int  # records the cleaning rules must reject
    wrong_fields: int  # of which: wrong number of fields (absent from `copyable`)
    size: int  # bytes

    @property
    def loaded(self) -> int:
        return self.rows - self.rejects


def quote(value: str) -> str:
    """RFC 4180: quote a field holding a comma, quote or line break."""
    if "," in value or '"' in value or "\n" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def generate(path: Path, rows: int, seed: int = 7) -> Generated:
    """Write `rows` data records (plus header and a few blank lines) to `path`."""
    rng = random.Random(seed)
    copyable = path.with_name(path.stem + ".copyable.csv")
    thresholds = []
    total = 0.0
    for kind, share in SHARES:
        total += share
        thresholds.append((total, kind))
    rejects = wrong_fields = 0
    with path.open("w", encoding="utf-8", newline="") as out, \
            copyable.open("w", encoding="utf-8", newline="") as twin:
        header = "fullname,age,location\n"
        out.write(header)
        twin.write(header)
        lines: list[str] = []
        twin_lines: list[str] = []
        for n in range(1, rows + 1):
            name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
            age = str(rng.randrange(0, 100))
            location = rng.choice(LOCATIONS)
            draw = rng.random()
            kind = next((k for limit, k in thresholds if draw < limit), "plain")
            line = None
            if kind == "bad_age":
                age = rng.choice(BAD_AGES)
                rejects += 1
            elif kind == "empty_name":
                name = rng.choice(("", "   "))
                rejects += 1
            elif kind == "wrong_fields":
                rejects += 1
                wrong_fields += 1
                extra = rng.random() < 0.5
                line = f"{quote(name)},{age}" + (f",{quote(location)},extra\n" if extra else "\n")
            elif kind == "messy":
                name = f"  {name.replace(' ', '   ')} "
                age = rng.choice((f" {age} ", f"{age}.0"))
            elif kind == "comma_name":
                first, _, last = name.partition(" ")
                name = f"{last}, {first}"
            elif kind == "quoted_quote":
                first, _, last = name.partition(" ")
                name = f'{first} "{rng.choice(LAST_NAMES)}" {last}'
            elif kind == "multiline":
                location = location.replace(", ", "\n") if ", " in location else location + "\nUSA"
            if line is None:
                line = f"{quote(name)},{age},{quote(location)}\n"
                twin_lines.append(line)
            lines.append(line)
            if n % BLANK_LINE_EVERY == 0:
                lines.append("\n")  # COPY reads a blank line as a record: not in the twin
            if len(lines) >= 50_000:
                out.write("".join(lines))
                twin.write("".join(twin_lines))
                lines.clear()
                twin_lines.clear()
        out.write("".join(lines))
        twin.write("".join(twin_lines))
    return Generated(path, copyable, rows, rejects, wrong_fields, path.stat().st_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    made = generate(args.out, args.rows, args.seed)
    print(f"{made.path}: {made.rows} rows, {made.rejects} to reject, {made.size} bytes")


if __name__ == "__main__":
    main()
