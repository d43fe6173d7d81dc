"""``celery -A tests.support.leaky_celery_app worker|beat``: the project's Celery app, whose
process prints every configured secret once it is up (holds no tests).

The line comes from a logger that is not ours, as a third-party library's might: what
reaches the output shows whether the scrubbing handler of :mod:`core.logging` is still
the one in place after Celery set up its logging.

The app is loaded when Celery asks for ``app``: a test importing :data:`LEAK_PREFIX` must
not build settings and logging from its own environment.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals

#: What the line starts with; the secrets follow, separated by spaces.
LEAK_PREFIX = "a library printed the secrets:"


def __getattr__(name: str) -> Any:
    if name != "app":
        raise AttributeError(name)
    from workers.main import app, settings

    def print_the_secrets(**kwargs: Any) -> None:
        logging.getLogger("some.library").warning(
            "%s %s", LEAK_PREFIX, " ".join(settings.secrets())
        )

    signals.worker_ready.connect(print_the_secrets, weak=False)
    signals.beat_init.connect(print_the_secrets, weak=False)
    return app
