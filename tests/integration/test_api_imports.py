"""An API process publishes jobs of every kind without loading the kinds' own libraries.

The kinds' declarations name their logic lazily (``tasks/<kind>/kind.py``), so a fresh
process that builds the app, starts it and accepts one job of every declared kind (each
kind's example body, admission checks included) never imports boto3, the codecs, the
local model or a provider's SDK that only a worker running those jobs needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from db.repositories.prompts import PromptRepository
from db.transaction import write_transaction
from domain.prompts import Prompt
from tasks.registry import kind_registry
from tests.support.api import KEY, KEYS, api_settings, ledger, llen

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
    answers = {{
        kind: client.post(
            f"/v1/jobs/{{kind}}", json=body, headers={{"Authorization": "Bearer {KEY}"}}
        )
        for kind, body in json.loads(sys.argv[1]).items()
    }}
print(json.dumps({{
    "statuses": {{kind: answer.status_code for kind, answer in answers.items()}},
    "loaded": sorted(name for name in {HEAVY!r} if name in sys.modules),
}}))
"""

#: Replicas for the API's settings, so that the replica-sync kind's example names one.
REPLICAS = [{"name": "edge-1", "path": "edge-1.db", "sync_url": "http://127.0.0.1:9"}]
REPLICA_HOST = "api-host"


def _admissible(settings: Settings) -> None:
    """What the kinds' examples refer to: the evaluation's prompt (its template has the
    example's variables)."""
    example = kind_registry()["evaluation"].example
    prompt = Prompt(
        id=str(example["prompt_id"]),
        title="greeting",
        content="Say hello to {{ name }} in {{ lang }}.",
        user_id="user-1",
    )
    with ledger(settings) as db:
        write_transaction(db, lambda session: PromptRepository(session).add(prompt))


def test_a_fresh_api_process_publishes_a_job_of_every_kind_without_the_kinds_libraries(
    migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
) -> None:
    _admissible(migrated)
    kinds = kind_registry().enabled()
    bodies: dict[str, Any] = {kind.name: dict(kind.example) for kind in kinds}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("APP_", "TURSO_"))},
        "DATABASE_URL": str(db_path),
        "REDIS_URL": redis_url,
        "AUTOFORGE_API_KEYS": KEYS,
        "REPLICAS": json.dumps(REPLICAS),
        "REPLICA_HOST": REPLICA_HOST,
    }
    # The queue each job goes to, as the API process routes it.
    routing = api_settings(db_path, redis_url, replicas=REPLICAS, replica_host=REPLICA_HOST)
    queues = {
        kind.name: kind_registry().queue_of(routing, kind, bodies[kind.name]) for kind in kinds
    }

    result = subprocess.run(
        [sys.executable, "-c", API_PROCESS, json.dumps(bodies)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["statuses"] == dict.fromkeys(bodies, 202)
    # Every job was really published, to its kind's queue.
    expected = Counter(queues.values())
    assert {queue: llen(redis_url, queue) for queue in expected} == expected
    assert outcome["loaded"] == []
