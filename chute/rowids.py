"""Row ids: derived from the file's content and the row's line number.

The same bytes always give the same ids, so handling a file twice can never create a
second copy of a row. The id is a version 8 uuid whose leading bytes come from the
file's sha256 and whose trailing bytes are the line number: ids of one file follow the
file's order, which keeps the primary-key index's inserts sequential (measured: it
nearly halves COPY time on a 1M-row file compared with uuid5).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

_VERSION_8 = 0x8 << 12
_VARIANT = 0b10 << 62


def row_id_factory(sha256_hex: str) -> Callable[[int], str]:
    """Return `line -> uuid text` for one file; the prefix is computed once per file."""
    high = int(sha256_hex[:16], 16)
    high = (high & ~(0xF << 12)) | _VERSION_8
    text = f"{high:016x}"
    prefix = f"{text[:8]}-{text[8:12]}-{text[12:16]}-"

    def row_id(line: int) -> str:
        low = f"{_VARIANT | line:016x}"
        return f"{prefix}{low[:4]}-{low[4:]}"

    return row_id


def row_uuid(sha256_hex: str, line: int) -> uuid.UUID:
    return uuid.UUID(row_id_factory(sha256_hex)(line))
