"""What a worker or API process holds: settings, the database, the job publisher.

Built from the settings without connecting to anything; connections are made lazily in
the process that uses them (see :class:`db.database.Database`).
"""

from __future__ import annotations

from dataclasses import dataclass

from core.settings import Settings
from db.database import Database
from workers.publisher import JobPublisher


@dataclass
class Runtime:
    settings: Settings
    db: Database
    publisher: JobPublisher
