import hashlib
import uuid

from hypothesis import given
from hypothesis import strategies as st

from chute.reading.rowids import row_uuid

SHA = hashlib.sha256(b"fullname,age,location\n").hexdigest()


@given(line=st.integers(1, 2**62 - 1))
def test_ids_are_version_8_uuids_with_the_line_in_the_tail(line: int) -> None:
    value = row_uuid(SHA, line)

    assert value.version == 8
    assert value.variant == uuid.RFC_4122
    assert value.int & (2**62 - 1) == line
    assert value.hex[:12] == SHA[:12]


def test_same_file_and_line_give_the_same_id_and_follow_file_order() -> None:
    ids = [str(row_uuid(SHA, line)) for line in range(2, 1000)]

    assert ids == [str(row_uuid(SHA, line)) for line in range(2, 1000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_other_content_gives_other_ids() -> None:
    other = hashlib.sha256(b"other").hexdigest()

    assert row_uuid(SHA, 2) != row_uuid(other, 2)
