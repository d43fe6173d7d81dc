"""An API process publishes jobs of every kind without loading the kinds' own libraries.

The kinds' declarations name their logic lazily (``tasks/<kind>/kind.py``), so a fresh
process that builds the app, starts it and accepts a backup job (the kind with the
heaviest dependencies) never imports boto3 or the codecs that only a worker running it
needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import Settings
from tests.support.api import KEY, KEYS, llen

pytestmark = pytest.mark.integration

#: What a backup job loads when it runs (S3 storage, compression), and what the embedding
#: and evaluation kinds load (a local model, a provider's client): an API needs none of it.
HEAVY = (
    "boto3",
    "botocore",
    "s3transfer",
    "zstandard",
    "onnxruntime",
    "tokenizers",
    "numpy",
    "openai",
)

API_PROCESS = f"""
import json, sys, warnings

from api.app import create_app
from core.settings import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

app = create_app(load_settings())
app.openapi()
with TestClient(app) as client:
    answers = [
        client.post(f"/v1/jobs/{{kind}}", json={{}}, headers={{"Authorization": "Bearer {KEY}"}})
        for kind in ("backup", "canary")
    ]
print(json.dumps({{
    "statuses": [answer.status_code for answer in answers],
    "loaded": sorted(name for name in {HEAVY!r} if name in sys.modules),
}}))
"""


def test_a_fresh_api_process_publishes_a_backup_job_without_the_backup_libraries(
    migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("APP_", "TURSO_"))},
        "DATABASE_URL": str(db_path),
        "REDIS_URL": redis_url,
        "AUTOFORGE_API_KEYS": KEYS,
    }

    result = subprocess.run(
        [sys.executable, "-c", API_PROCESS],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["statuses"] == [202, 202]
    assert llen(redis_url, "maintenance") == 1  # the backup job was really published
    assert outcome["loaded"] == []
