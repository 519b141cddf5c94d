"""The columnar side every type shares: parse_column's common part, and numpy/Arrow plumbing.

parse_column settles nulls, empty texts, `values` and `pattern` a column at a time, then
gives the remaining texts to the type's own columnar parser. The helpers read texts' bytes
as numpy matrices and write fixed-size binary COPY fields (an int32 length, then the value)
for a whole array at once.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from chute.datasets.types.rules import Rules

NULL = struct.pack(">i", -1)  # a NULL field: the length -1 and no bytes
BYTES = pa.large_binary()
NOTHING = pa.scalar(b"", BYTES)
_NULL_FIELD = pa.scalar(NULL, BYTES)


def parse_column(texts: pa.Array, rules: Rules) -> tuple[pa.Array, np.ndarray]:
    """Typed values for an array of cleaned texts, and which of them are settled.

    Where settled is True the value equals parse()'s (null for a null text); elsewhere the
    value is null and the caller gives the text to parse(), which decides.
    """
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if texts.type != pa.large_string():
        texts = texts.cast(pa.large_string())
    count = len(texts)
    present = texts.is_valid().to_numpy(zero_copy_only=False)
    # Candidates: present, not empty, within `values` and `pattern`.
    candidate = present & (to_numpy(pc.binary_length(texts), 0) > 0)
    if rules._allowed is not None:
        candidate &= to_numpy(pc.is_in(texts, value_set=pa.array(sorted(rules._allowed),
                                                                  pa.large_string())), False)
    if rules._compiled is not None and candidate.any():
        candidate &= _pattern_matches(texts, rules._compiled, candidate)
    at = np.flatnonzero(candidate)
    if len(at) == count:
        chosen = texts
    else:
        chosen = texts.take(pa.array(at))
    values, ok = rules.type.family.parse_column(chosen, rules)
    settled = ~present
    settled[at[ok]] = True
    if len(at) == count and ok.all():
        return values, settled
    # Spread the chosen rows' values back to their places; null elsewhere.
    where = np.full(count, -1, dtype=np.int64)
    where[at[ok]] = np.flatnonzero(ok)
    return values.take(pa.array(where, mask=where < 0)), settled


def to_numpy(array: pa.Array, fill: object) -> np.ndarray:
    """The array as numpy, its nulls as fill."""
    return pc.fill_null(array, fill).to_numpy(zero_copy_only=False)


# Where Arrow's RE2 and Python's re read a pattern differently: lookarounds, flags, named
# groups and other (?...) forms, "{,n}" (a literal to RE2), POSIX classes ([[:alpha:]],
# which re does not know), backreferences and escapes one of them lacks.
_RE2_DIFFERS = re.compile(r"\(\?(?!:)|\{,|\[:|\\[0-9AZzbBgGkKpPNxuUhHvVR]")
# Classes that are Unicode-aware in re and ASCII-only in RE2: the same on ASCII text.
_RE2_ASCII_ONLY = re.compile(r"\\[dDwWsS]")


def _pattern_matches(texts: pa.Array, compiled: re.Pattern[str], candidate: np.ndarray
                     ) -> np.ndarray:
    """Where each candidate's whole text fits the pattern.

    Arrow's RE2 decides at once, for a pattern both engines read alike (the common
    subset: literals, classes, quantifiers, groups, alternation), and only the texts it
    matches count as fitting: a text it refuses goes the row way, where re decides (and a
    refused text is almost always a reject, which takes that way for its reason anyway).
    Other patterns: re.fullmatch, once per distinct text.
    """
    pattern = compiled.pattern
    if not _RE2_DIFFERS.search(pattern):
        try:
            fits = to_numpy(pc.match_substring_regex(texts, f"^(?:{pattern})$"), False)
        except pa.ArrowInvalid:  # RE2 cannot compile it: re alone decides
            pass
        else:
            if _RE2_ASCII_ONLY.search(pattern):
                fits &= to_numpy(pc.string_is_ascii(texts), False)
            return fits
    encoded = pc.dictionary_encode(texts)
    indices = to_numpy(encoded.indices, 0)
    distinct = encoded.dictionary.to_pylist()
    used = np.zeros(len(distinct), dtype=bool)
    used[indices[candidate]] = True
    fits = np.zeros(len(distinct), dtype=bool)
    for i in np.flatnonzero(used):
        fits[i] = compiled.fullmatch(distinct[i]) is not None
    return fits[indices]


def shape(texts: pa.Array, regex: str) -> np.ndarray:
    """Where each text matches regex (RE2, anchored by the caller)."""
    return to_numpy(pc.match_substring_regex(texts, regex), False)


def any_true(array: pa.Array) -> bool:
    return bool(pc.any(array).as_py())


def byte_matrix(view: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """The bytes of values that all have `width` bytes and follow one another (as in an
    array Arrow just built), one row each."""
    if not len(starts):
        return np.zeros((0, width), dtype=np.uint8)
    first = int(starts[0])
    return view[first:first + width * len(starts)].reshape(len(starts), width)


def bytes_of(texts: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A large_string array's bytes, and each value's start and length in them."""
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[
        texts.offset:texts.offset + len(texts) + 1]
    data = texts.buffers()[2]
    view = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    return view, offsets[:-1], np.diff(offsets)


def by_length(texts: pa.Array, ok: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """ok's rows grouped by their length in bytes: each group's row numbers, and its
    bytes as a matrix of one row per text."""
    lengths = to_numpy(pc.binary_length(texts), 0)
    for length in np.unique(lengths[ok]):
        rows = np.flatnonzero(ok & (lengths == length))
        view, starts, _ = bytes_of(texts.take(pa.array(rows)))
        yield rows, byte_matrix(view, starts, int(length))


def digits_at(matrix: np.ndarray, position: int, width: int) -> np.ndarray:
    """The number each row writes with `width` ASCII digits at `position`."""
    digits = matrix[:, position:position + width].astype(np.int64) - 48
    return digits @ (10 ** np.arange(width - 1, -1, -1, dtype=np.int64))


def _records(value_dtype: object, values: object, size: int, count: int) -> np.ndarray:
    """Fixed-size fields as numpy records: an int32 length, then the value."""
    records = np.empty(count, dtype=[("length", ">i4"), ("value", value_dtype)])
    records["length"] = size
    records["value"] = values
    return records


def fixed(values: np.ndarray, dtype: object, size: int, valid: np.ndarray
          ) -> pa.LargeBinaryArray:
    """Binary COPY fields of `size` bytes each, written as dtype; NULL where not valid."""
    return with_nulls(binary(_records(dtype, values, size, len(valid))), valid)


def with_nulls(fields: pa.Array, valid: np.ndarray) -> pa.LargeBinaryArray:
    """The fields, with the NULL field where not valid."""
    if valid.all():
        return fields
    return pc.if_else(pa.array(valid), fields, _NULL_FIELD)


def binary(fixed: np.ndarray) -> pa.Array:
    """A numpy array of fixed-size records as an Arrow binary array, one value each."""
    width = fixed.dtype.itemsize
    array = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(fixed), [None, pa.py_buffer(fixed.tobytes())])
    return array.cast(BYTES)
