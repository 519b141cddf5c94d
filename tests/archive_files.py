"""Zip archives for tests, as suppliers send them and as they arrive broken: a member
encrypted, one that fails its CRC, one whose compression method no reader shares."""

from __future__ import annotations

import io
import struct
import zipfile


def make_zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A zip of `members` (a name ending in "/" is a folder), the same bytes each time."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=(2024, 6, 1, 0, 0, 0))
            if name.endswith("/"):  # a folder: as zipfile.mkdir writes one
                info.external_attr = 0o40775 << 16 | 0x10
            else:
                info.compress_type = method
            archive.writestr(info, data)
    return out.getvalue()


def _central_entry(data: bytes, name: str) -> int:
    """Where the central directory's entry for `name` starts."""
    at = data.find(b"PK\x01\x02")
    while at != -1:
        length = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + length] == name.encode():
            return at
        at = data.find(b"PK\x01\x02", at + 4)
    raise KeyError(name)


def _local_header(data: bytes, name: str) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.getinfo(name).header_offset


def mark_encrypted(data: bytes, name: str) -> bytes:
    """Set the member's "encrypted" flag, in its local header and central entry."""
    patched = bytearray(data)
    for at, offset in ((_local_header(data, name), 6), (_central_entry(data, name), 8)):
        flags = struct.unpack_from("<H", patched, at + offset)[0]
        struct.pack_into("<H", patched, at + offset, flags | 0x1)
    return bytes(patched)


def set_method(data: bytes, name: str, method: int) -> bytes:
    """Claim another compression method for the member (99: AES, which zipfile lacks)."""
    patched = bytearray(data)
    for at, offset in ((_local_header(data, name), 8), (_central_entry(data, name), 10)):
        struct.pack_into("<H", patched, at + offset, method)
    return bytes(patched)


def damage(data: bytes, name: str) -> bytes:
    """Flip a byte of a stored member's data: its CRC no longer matches."""
    at = _local_header(data, name)
    name_length, extra_length = struct.unpack_from("<HH", data, at + 26)
    start = at + 30 + name_length + extra_length
    patched = bytearray(data)
    patched[start + 3] ^= 0xFF
    return bytes(patched)
