"""Compression and authenticated encryption of backup files, byte for byte.

Every way of damaging an encrypted file (one byte anywhere, a cut, an extension, chunks
swapped or repeated, the final chunk dropped) and a wrong key must raise
:class:`BackupCorrupted`; plain files must round-trip unchanged in every compression.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from tasks.backup.codec import CHUNK_BYTES, decode_file, encode_file, key_id, sha256_file
from tasks.backup.errors import BackupCorrupted, BackupKeyMismatch, EncryptionKeyMissing
from tasks.backup.manifest import Compression

HEADER_BYTES = 8 + 8 + 32 + 4
FRAME_BYTES = 5
CHUNK = 4096  # small chunks: a few hundred KiB make many of them
KEY = bytes(range(32))
COMPRESSIONS: list[Compression] = ["zstd", "gzip", "none"]


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    """Half incompressible, half zeros, like a database with free pages."""
    path = tmp_path / "raw.db"
    path.write_bytes(os.urandom(150_000) + bytes(150_000) + b"tail")
    return path


def encode(raw: Path, tmp_path: Path, compression: Compression, key: bytes | None) -> Path:
    stored = tmp_path / f"stored-{compression}-{key is not None}"
    result = encode_file(raw, stored, compression=compression, key=key, chunk_bytes=CHUNK)
    assert result.raw_size == raw.stat().st_size
    assert result.stored_size == stored.stat().st_size
    assert result.stored_sha256 == sha256_file(stored)
    return stored


def decode(stored: Path, compression: Compression, key: bytes | None, size: int) -> bytes:
    out = stored.with_name(stored.name + ".out")
    out.unlink(missing_ok=True)
    decode_file(
        stored,
        out,
        compression=compression,
        encrypted=key is not None,
        key=key,
        expected_raw_size=size,
    )
    return out.read_bytes()


def raises_corrupted(stored: Path, compression: Compression, key: bytes | None, size: int) -> bool:
    try:
        decode(stored, compression, key, size)
    except BackupCorrupted:
        return True
    return False


def frames(data: bytes) -> list[tuple[int, int]]:
    """(offset, length) of each frame after the header."""
    found = []
    offset = HEADER_BYTES
    while offset < len(data):
        _flags, length = struct.unpack(">BI", data[offset : offset + FRAME_BYTES])
        found.append((offset, FRAME_BYTES + length))
        offset += FRAME_BYTES + length
    return found


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("key", [None, KEY], ids=["plain", "encrypted"])
def test_round_trip(raw: Path, tmp_path: Path, compression: Compression, key: bytes | None) -> None:
    stored = encode(raw, tmp_path, compression, key)

    assert decode(stored, compression, key, raw.stat().st_size) == raw.read_bytes()
    if compression != "none":
        assert stored.stat().st_size < raw.stat().st_size * 0.75
    if key is not None:
        assert raw.read_bytes()[:4096] not in stored.read_bytes()


def test_an_empty_file_round_trips_encrypted(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    stored = encode(empty, tmp_path, "zstd", KEY)
    assert decode(stored, "zstd", KEY, 0) == b""


def test_every_single_byte_change_is_detected(raw: Path, tmp_path: Path) -> None:
    stored = encode(raw, tmp_path, "none", KEY)  # no compression: more chunks to hit
    original = stored.read_bytes()
    layout = frames(original)
    assert len(layout) > 50
    last_offset, last_length = layout[-1]
    positions = {
        "magic": 0,
        "key id": 8,
        "salt": 20,
        "chunk size": HEADER_BYTES - 1,
        "first frame flags": HEADER_BYTES,
        "first frame length": HEADER_BYTES + 3,
        "first ciphertext": HEADER_BYTES + FRAME_BYTES + 7,
        "a middle chunk": layout[len(layout) // 2][0] + 100,
        "last frame flags": last_offset,
        "last tag": last_offset + last_length - 1,
    }
    undetected = []
    for where, position in positions.items():
        damaged = bytearray(original)
        damaged[position] ^= 0x01
        stored.write_bytes(bytes(damaged))
        if not raises_corrupted(stored, "none", KEY, raw.stat().st_size):
            undetected.append(where)
    assert undetected == []


def test_structural_damage_is_detected(raw: Path, tmp_path: Path) -> None:
    stored = encode(raw, tmp_path, "none", KEY)
    original = stored.read_bytes()
    layout = frames(original)
    header = original[:HEADER_BYTES]
    chunks = [original[o : o + n] for o, n in layout]
    variants = {
        "final chunk dropped": header + b"".join(chunks[:-1]),
        "cut inside a chunk": original[: layout[3][0] + 20],
        "bytes appended": original + b"\x00",
        "frame appended": original + chunks[-1],
        "two chunks swapped": header + chunks[1] + chunks[0] + b"".join(chunks[2:]),
        "a chunk repeated": header + chunks[0] + b"".join(chunks[:]),
        "header only": header,
        "empty": b"",
    }
    undetected = []
    for name, data in variants.items():
        stored.write_bytes(data)
        if not raises_corrupted(stored, "none", KEY, raw.stat().st_size):
            undetected.append(name)
    assert undetected == []


def test_truncation_message_names_the_problem(raw: Path, tmp_path: Path) -> None:
    stored = encode(raw, tmp_path, "zstd", KEY)
    layout = frames(stored.read_bytes())
    stored.write_bytes(stored.read_bytes()[: layout[-1][0]])
    with pytest.raises(BackupCorrupted, match="without its final chunk"):
        decode(stored, "zstd", KEY, raw.stat().st_size)


def test_wrong_key_is_named(raw: Path, tmp_path: Path) -> None:
    stored = encode(raw, tmp_path, "zstd", KEY)
    other = bytes(32)
    with pytest.raises(BackupKeyMismatch, match=f"key {key_id(KEY)}.*key {key_id(other)}"):
        decode(stored, "zstd", other, raw.stat().st_size)
    assert issubclass(BackupKeyMismatch, BackupCorrupted)


def test_missing_key_is_a_configuration_error(raw: Path, tmp_path: Path) -> None:
    stored = encode(raw, tmp_path, "gzip", KEY)
    out = tmp_path / "out"
    with pytest.raises(EncryptionKeyMissing, match="BACKUP_ENCRYPTION_KEY"):
        decode_file(stored, out, compression="gzip", encrypted=True, key=None)


@pytest.mark.parametrize(
    ("compression", "checksum_at"),
    # zstd ends with 4 bytes of content checksum; gzip with CRC-32, then the length.
    [("zstd", -2), ("gzip", -6)],
)
def test_damaged_plain_compressed_files_are_detected(
    raw: Path, tmp_path: Path, compression: Compression, checksum_at: int
) -> None:
    """Defence in depth: the stored sha256 catches any change before decoding even starts.

    (A flipped padding bit in the last deflate byte changes nothing that gzip can see.)
    """
    stored = encode(raw, tmp_path, compression, None)
    original = bytearray(stored.read_bytes())
    flipped = bytearray(original)
    flipped[checksum_at] ^= 0x10
    for damaged in (original[: len(original) // 2], flipped):
        stored.write_bytes(damaged)
        with pytest.raises(BackupCorrupted):
            decode(stored, compression, None, raw.stat().st_size)


def test_the_key_id_is_a_fingerprint_not_the_key() -> None:
    assert len(key_id(KEY)) == 16
    assert key_id(KEY) != key_id(bytes(32))
    assert KEY.hex()[:16] != key_id(KEY)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_decoding_never_writes_past_the_expected_size(
    tmp_path: Path, compression: Compression
) -> None:
    """A tiny object that inflates far past the manifest's raw size: decoding stops at the
    limit, before the disk fills."""
    raw = tmp_path / "zeros"
    with raw.open("wb") as file:
        file.truncate(64 << 20)  # 64 MiB of zeros: a few kilobytes of zstd or gzip
    stored = encode(raw, tmp_path, compression, None)
    if compression != "none":
        assert stored.stat().st_size < 256 << 10
    out = tmp_path / "out"
    limit = 3 * CHUNK_BYTES + 123

    with pytest.raises(BackupCorrupted, match=f"more than the {limit} bytes"):
        decode_file(
            stored, out, compression=compression, encrypted=False, key=None,
            expected_raw_size=limit,
        )  # fmt: skip
    assert out.stat().st_size <= limit
