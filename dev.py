#!/usr/bin/env python3
"""Bootstrap and run AutoForge Jobs with nothing but Python 3.11+.

    python3 dev.py up      start the system on embedded defaults
    python3 dev.py test    run the whole test suite (lint, types, import contracts, tests)

Both create ``.venv`` on first use and install the locked dependencies into it
(``requirements-dev.lock``, hash-checked), re-installing when the lock file changes.
Extra arguments are passed on: ``python3 dev.py test -k settings``.
No root, no Docker, nothing preinstalled.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
LOCK = ROOT / "requirements-dev.lock"
STAMP = VENV / ".autoforge-installed"
# Turso's sync server (the npm package ``turso``): the replica-sync tests' primary.
TURSO_NPM = "turso@0.6.0"
NPM_PREFIX = ROOT / ".cache" / "npm"
TURSO_BIN = NPM_PREFIX / "node_modules" / ".bin" / "turso"


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], cwd=ROOT, check=True)


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in (LOCK, ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def ensure_environment() -> None:
    """Create .venv and install the locked dependencies if they are missing or stale."""
    if sys.version_info < (3, 11):
        sys.exit(f"AutoForge Jobs needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    python = BIN / "python"
    if STAMP.exists() and python.exists() and STAMP.read_text() == _fingerprint():
        return
    if not python.exists():
        print(f"creating {VENV} ...", flush=True)
        try:
            venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
        except subprocess.CalledProcessError:
            # Debian's python3 without python3-venv has no ensurepip: use this pip instead.
            venv.EnvBuilder(with_pip=False, clear=True).create(VENV)
    pip = [python, "-m", "pip"]
    if subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        pip = [sys.executable, "-m", "pip", "--python", str(python)]
    print("installing locked dependencies ...", flush=True)
    _run(*pip, "install", "--quiet", "--disable-pip-version-check", "--require-hashes", "-r", LOCK)
    _run(*pip, "install", "--quiet", "--disable-pip-version-check", "--no-deps", "-e", ROOT)
    STAMP.write_text(_fingerprint())


def ensure_test_servers() -> None:
    """Install Turso's sync server into ``.cache/npm`` when npm is there and it is not.

    Only for ``test``: without npm the replica-sync tests skip (with ``CI`` set they fail).
    """
    npm = shutil.which("npm")
    if TURSO_BIN.exists() or npm is None:
        return
    print(f"installing {TURSO_NPM} into {NPM_PREFIX} (replica-sync tests) ...", flush=True)
    NPM_PREFIX.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--prefix", str(NPM_PREFIX), TURSO_NPM],
        cwd=ROOT,
    )
    if result.returncode != 0:
        print(f"warning: npm could not install {TURSO_NPM}", flush=True)


def main(argv: list[str]) -> int:
    commands = {
        "up": [[BIN / "autoforge", "up", *argv[1:]]],
        "test": [
            [BIN / "ruff", "check", "."],
            [BIN / "ruff", "format", "--check", "."],
            [BIN / "mypy"],
            [BIN / "lint-imports"],
            [BIN / "pytest", *argv[1:]],
        ],
    }
    if not argv or argv[0] not in commands:
        print(__doc__)
        return 2
    ensure_environment()
    if argv[0] == "test":
        ensure_test_servers()
    for command in commands[argv[0]]:
        print("+", " ".join(str(Path(c).name) if i == 0 else str(c) for i, c in enumerate(command)))
        try:
            result = subprocess.run([str(c) for c in command], cwd=ROOT)
        except KeyboardInterrupt:
            return 130
        if result.returncode != 0:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
