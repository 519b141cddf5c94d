"""Names and places with the cardinality of real data, for the generated bench files.

A small fixed pool of names (a few dozen first and last names) makes every index on a
name column tiny and hot in cache, which hides most of what indexing costs on real
exports. Real surnames are many and skewed: a census lists well over 100,000 of them,
the commonest (Smith, about 0.8% of people) followed by a long tail of rare ones. The
pools here copy that shape: a few real names, accents and all, at the top, then names
built from syllables until the pool is large, drawn with Zipf-like weights
(1 / (rank + offset)), so a million rows hold tens of thousands of distinct values and
the commonest is about as common as in life.

Seeded: the same seed gives the same pools and the same draws.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import cache
from itertools import accumulate

REAL_FIRST = (
    "John", "Jane", "Michael", "Emily", "David", "Sarah", "James", "Olivia", "Robert", "Emma",
    "William", "Sophia", "Daniel", "Mia", "Thomas", "Ava", "Joseph", "Isabella", "Charles",
    "Grace", "José", "María", "François", "Zoë", "Chloé", "Renée", "Søren", "Åsa", "Björn",
    "Łukasz", "Małgorzata", "Jürgen", "Dvořák", "Íñigo", "Joaquín", "Noémie",
    "Ülkü", "Şebnem", "Nguyễn", "Thị", "Siobhán", "Seán", "Aoife", "Ólafur", "Dagný", "Zoltán",
)
REAL_LAST = (
    "Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Wilson", "Taylor",
    "Anderson", "Thomas", "Moore", "Martin", "Jackson", "White", "Harris", "Clark", "Lewis",
    "García", "Martínez", "Rodríguez", "Hernández", "López", "Müller", "Schröder", "Weiß",
    "Nowak", "Wiśniewski", "Kowalczyk", "Lefèvre", "Bélanger", "Gauthier", "Østergaard",
    "Ångström", "Þórsson", "Çelik", "Yılmaz", "Öztürk", "Trần", "Lê", "O'Brien", "O'Connor",
    "van der Berg", "de la Cruz", "Dupont-Aignan", "Ní Bhriain", "Kovács", "Novák",
)
REAL_PLACES = (
    "New York", "Los Angeles", "Chicago", "Houston", "Phoenix", "Philadelphia", "San Antonio",
    "San Diego", "Dallas", "San Jose", "Austin, TX", "Portland, OR", "Springfield, IL",
    "Paris, France", "Montréal, QC", "Québec", "São Paulo, Brazil", "Zürich", "München",
    "Kraków", "Łódź", "Reykjavík", "København", "Malmö", "İstanbul", "Hà Nội", "Đà Nẵng",
    "Dublin", "Cork, Ireland", "Bogotá", "Ciudad de México", "Córdoba, Argentina", "Lisboa",
    "Zaragoza", "Ålesund", "Tromsø", "Genève", "Brno", "Plzeň", "Győr",
)

_ONSETS = ("b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "kr", "l", "m",
           "n", "p", "pr", "r", "s", "sch", "sh", "st", "t", "tr", "v", "w", "z", "", "")
_VOWELS = ("a", "e", "i", "o", "u", "a", "e", "o", "ie", "ou", "é", "ö", "ü", "å", "í", "ó")
_CODAS = ("", "", "", "n", "r", "s", "l", "m", "k", "t", "nd", "rt", "st", "sk", "ck", "z")
_LAST_SHAPES = ("{}", "{}", "{}", "{}", "O'{}", "van {}", "de {}", "{}-{}")
_REGIONS = ("TX", "CA", "OR", "IL", "QC", "ON", "NSW", "Bavaria", "France", "Poland",
            "Brazil", "Norway", "Ireland", "Italia")


def _word(rng: random.Random, syllables: int) -> str:
    word = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                   for _ in range(syllables))
    return word[:1].upper() + word[1:]


def _pool(real: Sequence[str], size: int, make: object, rng: random.Random) -> list[str]:
    names = dict.fromkeys(real)
    while len(names) < size:
        names.setdefault(make(), None)  # type: ignore[operator]
    return list(names)


class Pool:
    """Values drawn with weight 1 / (rank + offset): the first few are common, most rare."""

    def __init__(self, values: list[str], offset: float) -> None:
        self.values = values
        self._cum = list(accumulate(1.0 / (rank + offset) for rank in range(len(values))))

    def draw(self, rng: random.Random, count: int) -> list[str]:
        return rng.choices(self.values, cum_weights=self._cum, k=count)


@cache
def first_names(seed: int = 1) -> Pool:
    """About 20,000 first names; the commonest near 3% of people, as in a census."""
    rng = random.Random(seed)
    values = _pool(REAL_FIRST, 20_000, lambda: _word(rng, rng.choice((2, 2, 3))), rng)
    return Pool(values, offset=3)


@cache
def last_names(seed: int = 2) -> Pool:
    """About 200,000 surnames, some of two words or with particles; the commonest near 1%."""
    rng = random.Random(seed)

    def make() -> str:
        shape = rng.choice(_LAST_SHAPES)
        words = [_word(rng, rng.choice((1, 2, 2, 3))) for _ in range(shape.count("{}"))]
        return shape.format(*words).strip()

    return Pool(_pool(REAL_LAST, 200_000, make, rng), offset=10)


@cache
def places(seed: int = 3) -> Pool:
    """About 30,000 towns, a third with a region after a comma (a quoted CSV field)."""
    rng = random.Random(seed)

    def make() -> str:
        town = _word(rng, rng.choice((2, 3, 3)))
        return f"{town}, {rng.choice(_REGIONS)}" if rng.random() < 0.33 else town

    return Pool(_pool(REAL_PLACES, 30_000, make, rng), offset=5)
