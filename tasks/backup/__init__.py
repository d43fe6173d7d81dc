"""Backups and restore of the libSQL database: the logic library behind the ``backup`` job.

One module per concern, so a reader finds a thing by its name:

- :mod:`~tasks.backup.errors`: the closed set of errors (corrupted, not found, refused, ...);
- :mod:`~tasks.backup.schema`: which tables a backup holds, and how their rows are walked;
- :mod:`~tasks.backup.snapshot`: the online copy of a local file (SQLite backup API) and the
  logical export of a remote database into a new local file;
- :mod:`~tasks.backup.verify`: integrity check, row counts and content checksums;
- :mod:`~tasks.backup.manifest`: ``BackupManifest``, the catalogue entry of one backup;
- :mod:`~tasks.backup.codec`: compression and authenticated encryption, streaming;
- :mod:`~tasks.backup.storage`: a local folder or S3-compatible object storage;
- :mod:`~tasks.backup.catalogue`: manifests in a storage (published last, listed, removed);
- :mod:`~tasks.backup.retention`: grandfather-father-son, a pure function;
- :mod:`~tasks.backup.service`: create, list, verify, restore, prune and the restore drill,
  the plain functions that the Celery task and the CLI call.
"""
