"""Signed manifests: HMAC-SHA256 with a key derived from ``BACKUP_ENCRYPTION_KEY``.

A manifest tells a restore what to expect: whether the object is encrypted, its sha256
and size, how many bytes it decodes to, which rows it holds. Whoever can write to the
backup storage could otherwise rewrite a manifest to match a substituted object (say, an
unencrypted one, or a few kilobytes of zstd that inflate to fill the disk) and the restore
would believe it. So, with a key configured, every manifest is signed when it is written
and checked when it is read; one that is unsigned, altered, copied under another backup's
name, or signed with another key is refused like a tampered object.

*The key.* ``HKDF-SHA256(BACKUP_ENCRYPTION_KEY, info="autoforge-backup-manifest/v1")``: a
key of its own, so the MAC never shares a key with the cipher of :mod:`tasks.backup.codec`,
and nothing new to keep safe.

*What is signed.* The stored JSON object without its ``signature`` member, re-serialised
canonically (sorted keys, no whitespace, ASCII): every member is covered, including ones a
newer version added that this one does not read.

*Without a key* manifests are written unsigned and read without a check (a signature
cannot be checked without the key): backups are then neither encrypted nor authenticated,
and :mod:`tasks.backup.service` says so in a warning. See docs/decisions.md ("Signed
backup manifests").

Stored form::

    {..., "signature": {"algorithm": "HMAC-SHA256", "key_id": "<16 hex>", "value": "<64 hex>"}}
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import ValidationError

from tasks.backup.codec import key_id
from tasks.backup.errors import BackupCorrupted, BackupKeyMismatch, ManifestRejected
from tasks.backup.manifest import BackupManifest

ALGORITHM = "HMAC-SHA256"
SIGNATURE_FIELD = "signature"
_HKDF_INFO = b"autoforge-backup-manifest/v1"


class ManifestSigner:
    """Writes and reads manifests, signing and checking them when a key is configured."""

    def __init__(self, encryption_key: bytes | None) -> None:
        self._mac_key: bytes | None = None
        #: Fingerprint of the configured key (None: no key, manifests are unsigned).
        self.key_id: str | None = None
        if encryption_key is not None:
            self._mac_key = HKDF(
                algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO
            ).derive(encryption_key)
            self.key_id = key_id(encryption_key)

    def __repr__(self) -> str:
        return f"ManifestSigner(key_id={self.key_id!r})"

    @property
    def signs(self) -> bool:
        """Whether manifests are signed and checked (a key is configured)."""
        return self._mac_key is not None

    def dump(self, manifest: BackupManifest) -> bytes:
        """The manifest as stored: JSON, with its signature when a key is configured."""
        document: dict[str, Any] = json.loads(manifest.to_json())
        if self._mac_key is not None:
            document[SIGNATURE_FIELD] = {
                "algorithm": ALGORITHM,
                "key_id": self.key_id,
                "value": self._mac(document),
            }
        return json.dumps(document, indent=2).encode()

    def load(self, data: bytes, backup_id: str, *, accept_unsigned: bool = False) -> BackupManifest:
        """The manifest stored as ``data`` under ``backup_id``'s name, checked.

        Raises :class:`BackupCorrupted` if it cannot be read, :class:`ManifestRejected` if
        it is not what this key signed for this backup, :class:`BackupKeyMismatch` if
        another key signed it. ``accept_unsigned`` lets a manifest without any signature
        through (for :func:`tasks.backup.service.adopt_backup` only); one that carries a
        signature is still checked.
        """
        try:
            document = json.loads(data)
        except ValueError as exc:
            raise BackupCorrupted(f"the manifest of {backup_id} is not JSON: {exc}") from None
        if not isinstance(document, dict):
            raise BackupCorrupted(f"the manifest of {backup_id} is not a JSON object")
        signature = document.pop(SIGNATURE_FIELD, None)
        if self._mac_key is not None and not (signature is None and accept_unsigned):
            self._check(document, signature, backup_id)
        try:
            manifest = BackupManifest.model_validate(document)
        except ValidationError as exc:
            raise BackupCorrupted(f"the manifest of {backup_id} is unreadable: {exc}") from None
        if manifest.id != backup_id:
            raise ManifestRejected(
                f"the manifest stored as {backup_id} describes backup {manifest.id}: it was "
                "copied or renamed, refusing it"
            )
        return manifest

    def _check(self, document: dict[str, Any], signature: Any, backup_id: str) -> None:
        if signature is None:
            raise ManifestRejected(
                f"the manifest of {backup_id} is not signed, but BACKUP_ENCRYPTION_KEY is set: "
                "it was written before manifests were signed, or rewritten by someone without "
                "the key; refusing it (if it is one of yours from before signing, `autoforge "
                f"backup adopt {backup_id}` checks its data with the key and signs it)"
            )
        if (
            not isinstance(signature, dict)
            or signature.get("algorithm") != ALGORITHM
            or not isinstance(signature.get("key_id"), str)
            or not isinstance(signature.get("value"), str)
        ):
            raise ManifestRejected(f"the manifest of {backup_id} has a malformed signature")
        if signature["key_id"] != self.key_id:
            raise BackupKeyMismatch(
                f"backup {backup_id} was signed with key {signature['key_id'][:16]}, but the "
                f"configured BACKUP_ENCRYPTION_KEY is key {self.key_id}: wrong key"
            )
        try:
            expected = self._mac(document)
        except ValueError:  # NaN or Infinity: nothing we write
            expected = ""
        if not expected or not hmac.compare_digest(signature["value"], expected):
            raise ManifestRejected(
                f"the manifest of {backup_id} was altered: its signature does not match "
                "(refusing it like a tampered backup)"
            )

    def _mac(self, document: dict[str, Any]) -> str:
        assert self._mac_key is not None
        canonical = json.dumps(
            document, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        )
        return hmac.new(self._mac_key, canonical.encode(), hashlib.sha256).hexdigest()
