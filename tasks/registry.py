"""The application's job kinds: every ``tasks/<kind>/kind.py`` declaration, found by
discovery, so that adding a kind is adding a folder."""

from __future__ import annotations

import functools

import tasks
from jobs.registry import KindRegistry, discover


@functools.cache
def kind_registry() -> KindRegistry:
    """The declared job kinds (the ``KIND`` of each ``tasks/<kind>/kind.py``)."""
    return discover(tasks)
