"""A realistic, seeded wide file for bench/wide.toml: `python -m bench.generate_wide OUT.csv`.

An order export of 14 columns, one of every declared type (plain numeric and time too, as
`chute infer` declares them): ids, customers and emails of
real cardinality (bench.names: most values distinct), quantities and amounts with the
skew of shop data, a year of dates and times in several spellings (with and without a UTC
offset, "T" or space), uuids in either case, nullable columns with some empty values,
and a few messy values chute must clean ("7.0", spaces). 3% of rows carry one bad value
in one column, spread over all fourteen, each of a kind that column's rules must reject
(see BAD). The generator counts rows and rejects, as bench.generate does for people.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.generate import CHUNK, Generated, cli, quote
from bench.names import first_names, last_names

HEADER = ("Order ID,Customer,Email,Qty,Store,Amount,Weight (kg),Paid,Order Date,Shipped At,"
          "Created,Session,Tip,Pickup Time")
COLUMNS = len(HEADER.split(","))
BAD_SHARE = 0.03  # rows with one bad value
MESSY_SHARE = 0.005  # rows with values that are valid once cleaned
YEAR = date(2025, 1, 1)
DOMAINS = ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "gmx.de",
           "orange.fr", "web.de", "proton.me", "free.fr", "libero.it", "seznam.cz")
# What each column's rules must reject, by column position (see bench/wide.toml).
BAD: tuple[tuple[str, ...], ...] = (
    ("", "ORD-118", "9223372036854775808", "12.5", "1e9"),  # order_id: bigint, required
    ("", "   ", "x" * 201),  # customer: required, max_length 200
    ("ana.perez(at)gmail.com", "ana perez@gmail.com", "ana@gmail", "@"),  # email: pattern
    ("0", "-2", "1000", "two", "3.5", "1e2"),  # quantity: smallint 1..999, required
    ("0", "S12", "2147483648"),  # store_id: integer, min 1
    ("-5.00", "$12.00", "12,50", "abc", "99999999999.00"),  # amount: numeric(12,2) >= 0
    ("NaN", "heavy", "-1.5", "1e400"),  # weight_kg: double >= 0
    ("maybe", "2", "paid", ""),  # paid: boolean, required
    ("2025-02-30", "31/12/2025", "2025-13-01", "yesterday", ""),  # ordered_on: date
    ("2025-03-04 25:00:00", "2025-03-04T10:00:00+02:00", "soon"),  # shipped_at: no offset
    ("2025-06-31T10:00:00Z", "2025-06-01T10:00:00+25:00", "June 1st", ""),  # created_at
    ("not-a-uuid", "123e4567-e89b-12d3-a456-42661417400", "g23e4567e89b12d3a456426614174000"),
    ("abc", "1,50", "$2", "NaN"),  # tip: numeric
    ("25:00", "24:00", "noon", "14:61"),  # pickup: time
)
assert len(BAD) == COLUMNS
PAID = ("true", "false") * 8 + ("TRUE", "FALSE", "yes", "no", "1", "0", "t", "f")
OFFSETS = ("Z", "Z", "Z", "+00:00", "+01:00", "+02:00", "-05:00", "")


def _row(rng: random.Random, n: int, first: str, last: str) -> list[str]:
    """One valid order, as an export writes it."""
    customer = f"{first} {last}"
    local = f"{first}.{last}".lower().replace(" ", "").replace("'", "")
    email = "" if rng.random() < 0.05 else f"{local}{rng.randrange(100)}@{rng.choice(DOMAINS)}"
    quantity = min(999, int(rng.paretovariate(1.6)))
    price = round(rng.lognormvariate(3, 1.2), 2)
    day = YEAR + timedelta(days=rng.randrange(365))
    created = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(
        seconds=rng.randrange(86_400), microseconds=rng.choice((0, rng.randrange(1_000_000))))
    shipped = ""
    if rng.random() < 0.85:
        when = created.replace(tzinfo=None) + timedelta(hours=rng.randrange(4, 120))
        shipped = when.isoformat(sep=rng.choice((" ", " ", "T")), timespec="seconds")
    session = ""
    if rng.random() < 0.9:
        session = f"{rng.getrandbits(128):032x}"
        session = "-".join((session[:8], session[8:12], session[12:16], session[16:20],
                            session[20:]))
        if rng.random() < 0.05:
            session = session.upper()
    return [
        str(7_000_000_000 + 3 * n + rng.randrange(3)),
        customer if rng.random() > 0.01 else f"{last}, {first}",
        email,
        str(quantity),
        "" if rng.random() < 0.03 else str(min(int(rng.paretovariate(0.8)), 2000)),
        f"{price * quantity:.2f}" if rng.random() > 0.02 else f"{price:.1f}",
        "" if rng.random() < 0.04 else repr(round(rng.lognormvariate(0, 1), 3)),
        rng.choice(PAID),
        day.isoformat(),
        shipped,
        created.isoformat(timespec="auto").replace("+00:00", rng.choice(OFFSETS)),
        session,
        "" if rng.random() < 0.2 else rng.choice(
            (f"{price * 0.1:.2f}", f"{price * 0.15:.3f}", str(rng.randrange(1, 20)))),
        "" if rng.random() < 0.3 else f"{rng.randrange(24):02d}:{rng.randrange(60):02d}"
        + rng.choice(("", f":{rng.randrange(60):02d}")),
    ]


def _messy(rng: random.Random, values: list[str]) -> None:
    """Valid once cleaned: runs of spaces in a name, padding, a whole number as "7.0"."""
    values[1] = "  " + values[1].replace(" ", "   ") + " "
    values[3] = rng.choice((f" {values[3]} ", f"{values[3]}.0"))


def generate(path: Path, rows: int, seed: int = 11, bad_share: float = BAD_SHARE,
             messy_share: float = MESSY_SHARE) -> Generated:
    """Write a header and `rows` orders to `path`; 3% of them (`bad_share`) must be
    rejected, 0.5% (`messy_share`) are valid once cleaned."""
    rng = random.Random(seed)
    draws = random.Random(seed + 1)
    firsts, lasts = first_names(), last_names()
    rejects = 0
    with path.open("w", encoding="utf-8", newline="") as out:
        out.write(HEADER + "\n")
        for chunk_start in range(0, rows, CHUNK):
            count = min(CHUNK, rows - chunk_start)
            names = zip(firsts.draw(draws, count), lasts.draw(draws, count), strict=True)
            lines = []
            for n, (first, last) in enumerate(names, chunk_start + 1):
                values = _row(rng, n, first, last)
                draw = rng.random()
                if draw < bad_share:
                    column = rng.randrange(COLUMNS)
                    values[column] = rng.choice(BAD[column])
                    rejects += 1
                elif BAD_SHARE <= draw < BAD_SHARE + messy_share:
                    _messy(rng, values)
                lines.append(",".join(map(quote, values)) + "\n")
            out.write("".join(lines))
    return Generated(path, rows, rejects, path.stat().st_size)


def main() -> None:
    cli(generate, seed=11, doc=__doc__)


if __name__ == "__main__":
    main()
