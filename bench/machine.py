"""What the numbers were measured on: CPU, memory, OS, Python and the key libraries."""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = (
    "celery",
    "kombu",
    "redis",
    "libsql",
    "sqlalchemy",
    "fastapi",
    "uvicorn",
    "procrastinate",
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return platform.platform()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages: how busy the machine was besides the bench."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


def describe() -> dict[str, Any]:
    cores = os.cpu_count() or 0
    memory = _memory_gb()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    description = (
        f"{cores} cores ({_cpu_model()}), "
        + (f"{memory:.0f} GB RAM, " if memory else "")
        + f"{_os_name()}, Python {platform.python_version()}"
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_at_start": load_average(),
        "description": description,
        "cores": cores,
        "cpu": _cpu_model(),
        "memory_gb": memory,
        "os": _os_name(),
        "python": platform.python_version(),
        "packages": versions,
    }
