"""Compress, then encrypt with an authenticated cipher: streaming, in constant memory.

Encoding reads the database file once and writes the stored file once, through
compressor -> encryptor -> sha256 counter. Decoding is the inverse. Compression is zstd
(``zstandard``, with its content checksum and the raw size in the frame), gzip or none.

Encryption (when a key is configured) is AES-256-GCM in the "STREAM" construction
(Hoang, Reyhanitabar, Rogaway, Vizár 2015; what Tink's streaming AEAD and age do)::

    header = b"AFBKENC1" | key id (8 bytes) | salt (32 random bytes) | chunk size (4 bytes, BE)
    frame  = flags (1 byte: 1 = final chunk) | length (4 bytes, BE) | AES-GCM(chunk) with tag
    key_i  = HKDF-SHA256(master key, salt, info="autoforge-backup/v1")   (one per file)
    nonce  = 4 zero bytes | chunk index (8 bytes, BE)
    aad    = header | chunk index (8 bytes, BE) | flags

Why this shape:

- a fresh random salt gives every file its own key, so the counter nonces never repeat
  under one key (a random 96-bit nonce per chunk would be sound too, but needs the
  birthday bound and 12 stored bytes per chunk);
- the chunk index in the nonce and the AAD detects reordered, duplicated or dropped chunks;
- the final flag in the AAD detects truncation at a chunk boundary: a stream must end
  with a chunk that was *encrypted* as final, and nothing may follow it;
- the header in the AAD binds the salt, chunk size and key id to every chunk;
- every non-final chunk holds exactly ``chunk size`` bytes, so a frame cannot be resized.

The key id (a truncated sha256 of the key, under a domain prefix) is only a fingerprint:
it names the key a file needs, so a wrong key is reported as such before any chunk is
tried. Any failure (wrong key, a changed byte, a cut or extended file, a bad compressed
stream, a size other than expected) raises :class:`BackupCorrupted`.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol, cast

import zstandard
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from tasks.backup.errors import BackupCorrupted, BackupKeyMismatch, EncryptionKeyMissing
from tasks.backup.manifest import Compression

#: Plaintext bytes per encrypted chunk (and per read while copying).
CHUNK_BYTES = 1 << 20
ALGORITHM = "AES-256-GCM"
SCHEME = "afbk-stream-v1"
ZSTD_LEVEL = 3

_MAGIC = b"AFBKENC1"
_HEADER = struct.Struct(">8s8s32sI")  # magic, key id, salt, chunk size
_FRAME = struct.Struct(">BI")  # flags, ciphertext length
_CHUNK_AAD = struct.Struct(">QB")  # chunk index, flags
_FINAL = 0x01
_TAG_BYTES = 16
_MAX_CHUNK_BYTES = 64 << 20  # a header asking for more is not one of ours
_KEY_ID_PREFIX = b"autoforge-backup-key-id\x00"
_HKDF_INFO = b"autoforge-backup/v1"

#: Called while encoding with (raw bytes read, raw bytes in total).
CodecProgress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class EncodeResult:
    """Sizes and digest of an encoded file."""

    raw_size: int
    stored_size: int
    stored_sha256: str


def decode_key(encoded: str) -> bytes:
    """The 32-byte key from its base64 form (as in ``BACKUP_ENCRYPTION_KEY``)."""
    key = base64.b64decode(encoded, validate=True)
    if len(key) != 32:
        raise ValueError("an AES-256 key is 32 bytes")
    return key


def key_id(key: bytes) -> str:
    """The key's fingerprint (16 hex digits): names a key without revealing it."""
    return hashlib.sha256(_KEY_ID_PREFIX + key).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def encode_file(
    source: Path,
    target: Path,
    *,
    compression: Compression,
    key: bytes | None,
    chunk_bytes: int = CHUNK_BYTES,
    progress: CodecProgress | None = None,
) -> EncodeResult:
    """Compress ``source`` and, if ``key`` is given, encrypt it, into the new file ``target``."""
    raw_size = source.stat().st_size
    with source.open("rb") as raw, target.open("xb") as out:
        counter = _HashingWriter(out)
        encryptor = _EncryptingWriter(counter, key, chunk_bytes) if key is not None else None
        sink: _Writable = encryptor if encryptor is not None else counter
        compressor = _compressing_writer(sink, compression, raw_size)
        done = 0
        while block := raw.read(CHUNK_BYTES):
            compressor.write(block)
            done += len(block)
            if progress is not None:
                progress(done, raw_size)
        compressor.close()
        if encryptor is not None:
            encryptor.close()
        out.flush()
        os.fsync(out.fileno())
    return EncodeResult(raw_size, counter.size, counter.hexdigest())


def decode_file(
    source: Path,
    target: Path,
    *,
    compression: Compression,
    encrypted: bool,
    key: bytes | None,
    expected_raw_size: int | None = None,
) -> int:
    """Decrypt (if ``encrypted``) and decompress ``source`` into the new file ``target``.

    Returns the number of bytes written. Raises :class:`BackupCorrupted` on any sign of
    damage or a wrong key (``target`` may then hold a partial output: the caller owns and
    discards it), :class:`EncryptionKeyMissing` if the file is encrypted and no key is given.

    ``expected_raw_size`` is also a hard limit: decoding stops before the output would
    grow past it (a few kilobytes of zstd can inflate to gigabytes), so at most that many
    bytes are ever written.
    """
    if encrypted and key is None:
        raise EncryptionKeyMissing(
            f"{source.name} is encrypted; set BACKUP_ENCRYPTION_KEY to the key it was made with"
        )
    written = 0
    with source.open("rb") as stored, target.open("xb") as out:
        plain: BinaryIO = stored
        if encrypted:
            assert key is not None
            plain = io.BufferedReader(_DecryptingReader(stored, key), buffer_size=CHUNK_BYTES)
        try:
            reader = _decompressing_reader(plain, compression)
            while block := reader.read(CHUNK_BYTES):
                if expected_raw_size is not None and written + len(block) > expected_raw_size:
                    raise BackupCorrupted(
                        f"{source.name} decodes to more than the {expected_raw_size} bytes "
                        "its manifest records: stopped writing"
                    )
                out.write(block)
                written += len(block)
            # zstd stops at the end of its frame; whatever follows is not ours. Reading on
            # also makes the decryptor reach (and check) the final chunk.
            if compression == "zstd" and plain.read(1):
                raise BackupCorrupted(f"{source.name}: data after the end of the compressed stream")
        except (zstandard.ZstdError, gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise BackupCorrupted(
                f"{source.name}: the compressed stream is damaged ({compression}: {exc})"
            ) from exc
        out.flush()
        os.fsync(out.fileno())
    if expected_raw_size is not None and written != expected_raw_size:
        raise BackupCorrupted(
            f"{source.name} decodes to {written} bytes, expected {expected_raw_size}"
        )
    return written


class _Writable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


class _HashingWriter:
    """Writes through to a file, counting the bytes and their sha256 on the way."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes, /) -> int:
        self._out.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: the caller flushes and syncs the file at the end."""

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class _EncryptingWriter:
    """Cuts the stream into chunks and seals each one (see the module docstring)."""

    def __init__(self, sink: _Writable, key: bytes, chunk_bytes: int) -> None:
        if not 0 < chunk_bytes <= _MAX_CHUNK_BYTES:
            raise ValueError(f"chunk_bytes must be in 1..{_MAX_CHUNK_BYTES}")
        salt = os.urandom(32)
        self._header = _HEADER.pack(_MAGIC, bytes.fromhex(key_id(key)), salt, chunk_bytes)
        self._aead = AESGCM(_file_key(key, salt))
        self._sink = sink
        self._chunk_bytes = chunk_bytes
        self._buffer = bytearray()
        self._index = 0
        sink.write(self._header)

    def write(self, data: bytes, /) -> int:
        self._buffer += data
        # Strictly more than a chunk: the last bytes stay behind for the final chunk.
        while len(self._buffer) > self._chunk_bytes:
            self._seal(bytes(self._buffer[: self._chunk_bytes]), final=False)
            del self._buffer[: self._chunk_bytes]
        return len(data)

    def flush(self) -> None:
        """Chunks leave only when full: nothing to flush before :meth:`close`."""

    def close(self) -> None:
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()

    def _seal(self, plain: bytes, *, final: bool) -> None:
        flags = _FINAL if final else 0
        sealed = self._aead.encrypt(
            _nonce(self._index), plain, self._header + _CHUNK_AAD.pack(self._index, flags)
        )
        self._sink.write(_FRAME.pack(flags, len(sealed)) + sealed)
        self._index += 1


class _DecryptingReader(io.RawIOBase):
    """The plaintext of an encrypted stream, authenticated chunk by chunk as it is read."""

    def __init__(self, source: BinaryIO, key: bytes) -> None:
        super().__init__()
        header = _read_exact(source, _HEADER.size)
        if len(header) < _HEADER.size or not header.startswith(_MAGIC):
            raise BackupCorrupted("not an encrypted backup (no AFBKENC1 header)")
        _, stored_key_id, salt, chunk_bytes = _HEADER.unpack(header)
        if stored_key_id.hex() != key_id(key):
            raise BackupKeyMismatch(
                f"the backup was encrypted with key {stored_key_id.hex()}, but the configured "
                f"BACKUP_ENCRYPTION_KEY is key {key_id(key)}: wrong key"
            )
        if not 0 < chunk_bytes <= _MAX_CHUNK_BYTES:
            raise BackupCorrupted(f"implausible chunk size {chunk_bytes} in the header")
        self._source = source
        self._header = header
        self._chunk_bytes = chunk_bytes
        self._aead = AESGCM(_file_key(key, salt))
        self._index = 0
        self._pending = memoryview(b"")
        self._done = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._pending:
            if self._done:
                return 0
            self._pending = memoryview(self._open_next())
        count = min(len(buffer), len(self._pending))
        buffer[:count] = self._pending[:count]
        self._pending = self._pending[count:]
        return count

    def _open_next(self) -> bytes:
        index = self._index
        frame = _read_exact(self._source, _FRAME.size)
        if len(frame) < _FRAME.size:
            raise BackupCorrupted(
                f"truncated: the backup ends after {index} chunks, without its final chunk"
            )
        flags, length = _FRAME.unpack(frame)
        if flags not in (0, _FINAL) or not _TAG_BYTES <= length <= self._chunk_bytes + _TAG_BYTES:
            raise BackupCorrupted(f"malformed frame header at chunk {index}")
        sealed = _read_exact(self._source, length)
        if len(sealed) < length:
            raise BackupCorrupted(f"truncated: chunk {index} is cut short")
        try:
            plain = self._aead.decrypt(
                _nonce(index), sealed, self._header + _CHUNK_AAD.pack(index, flags)
            )
        except InvalidTag:
            raise BackupCorrupted(
                f"chunk {index} failed authentication: the backup was altered or damaged"
            ) from None
        if not flags & _FINAL and len(plain) != self._chunk_bytes:
            raise BackupCorrupted(f"chunk {index} has the wrong size")
        self._index += 1
        if flags & _FINAL:
            self._done = True
            if self._source.read(1):
                raise BackupCorrupted("data after the final chunk")
        return plain


def _compressing_writer(sink: _Writable, compression: Compression, raw_size: int) -> _Closable:
    if compression == "zstd":
        compressor = zstandard.ZstdCompressor(
            level=ZSTD_LEVEL, write_checksum=True, write_content_size=True
        )
        # zstandard's stubs ask for IO[bytes]; a writer with write() and flush() is enough.
        writer: _Closable = compressor.stream_writer(
            cast(IO[bytes], sink), size=raw_size, closefd=False
        )
        return writer
    if compression == "gzip":
        # mtime=0: the same input gives the same bytes (no wall clock in the header).
        return gzip.GzipFile(fileobj=sink, mode="wb", mtime=0)
    return _Passthrough(sink)


def _decompressing_reader(plain: BinaryIO, compression: Compression) -> _Readable:
    if compression == "zstd":
        reader: _Readable = zstandard.ZstdDecompressor().stream_reader(
            plain, read_size=CHUNK_BYTES, read_across_frames=False, closefd=False
        )
        return reader
    if compression == "gzip":
        return gzip.GzipFile(fileobj=plain, mode="rb")
    return plain


class _Closable(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def close(self) -> None: ...


class _Passthrough:
    """``compression="none"``: the bytes go through unchanged."""

    def __init__(self, sink: _Writable) -> None:
        self._sink = sink

    def write(self, data: bytes, /) -> int:
        return self._sink.write(data)

    def close(self) -> None:
        """The sink is closed by its owner."""


def _file_key(key: bytes, salt: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=_HKDF_INFO).derive(key)


def _nonce(index: int) -> bytes:
    return b"\x00" * 4 + index.to_bytes(8, "big")


def _read_exact(source: BinaryIO, size: int) -> bytes:
    """Up to ``size`` bytes: fewer only at the end of the file."""
    parts: list[bytes] = []
    remaining = size
    while remaining:
        part = source.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)
