"""The command line starts without the libraries only workers, the API or the database need.

``autoforge`` is mostly a client of the API, run once per command: its start-up imports
the commands and the kinds' declarations (``tasks/<kind>/kind.py``, which name their logic
lazily), never SQLAlchemy, the database driver, Celery or a kind's own libraries. A fresh
process imports ``cli.main``, runs a job command against an API that is not there and
``config show`` (which reads every kind's declaration), and reports what was loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]

#: What a command of the CLI that talks to the API (or only reads its settings) must not load.
HEAVY = (
    "sqlalchemy",
    "sqlalchemy_libsql",
    "libsql",
    "turso",
    "db",
    "celery",
    "kombu",
    "billiard",
    "redis",
    "fastapi",
    "prometheus_client",
    "boto3",
    "botocore",
    "onnxruntime",
    "numpy",
    "tokenizers",
    "openai",
)
#: What only the commands that call the API need, loaded when they run (httpx brings
#: zstandard along, for compressed answers).
CLIENT = ("httpx", "zstandard")

CLI_PROCESS = f"""
import json, sys

def loaded(names):
    return sorted(name for name in names if name in sys.modules)

import cli.main
from cli.errors import run_app

at_start = loaded({HEAVY + CLIENT!r})
show = run_app(cli.main.app, ["--api-url", "http://127.0.0.1:9", "jobs", "show", "x"])
after_show = loaded({HEAVY!r})
config = run_app(cli.main.app, ["config", "show", "--json"])
print()
print(json.dumps({{
    "codes": [show, config],
    "at_start": at_start,
    "after_show": after_show,
    "after_config": loaded({HEAVY!r}),
    "kinds_read": "tasks.backup.kind" in sys.modules,
}}))
"""


def test_a_fresh_cli_process_runs_commands_without_the_heavy_libraries(tmp_path: Path) -> None:
    ours = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
    env.update(PYTHONPATH=str(REPO), AUTOFORGE_API_KEY="afk_test", DATABASE_URL="data/x.db")

    result = subprocess.run(
        [sys.executable, "-c", CLI_PROCESS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert "cannot reach the API" in result.stderr  # the job command really ran
    assert outcome["codes"] == [1, 0]
    assert outcome["kinds_read"]  # config show read every kind's declaration
    assert outcome["at_start"] == []
    assert outcome["after_show"] == []
    assert outcome["after_config"] == []
