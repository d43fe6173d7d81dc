"""``/docs`` and ``/redoc`` of a real API server render in a browser with no internet.

The API runs as ``uvicorn --factory api.main:build`` on a migrated libSQL file and the
session's Redis. Headless Chromium may reach only loopback; it renders Swagger UI and
ReDoc, and the rendered DOM must hold every documented operation. The same server's real
``422`` answers must fit the schema its OpenAPI document gives for them. The screenshot
and DOM of ``/docs`` are kept under ``artifacts/``.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from core.settings import Settings
from tests.support.api_server import ApiServer, run_api_server
from tests.support.browser import LOOPBACK_ONLY, browse, chromium

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = PROJECT_ROOT / "artifacts"
KEY = "afk_docs-test-key"
# Scripts fetch /openapi.json and render after load.
RENDER = ("--virtual-time-budget=15000",)
CDN_SCRIPT = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"


@pytest.fixture
def api(migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path) -> Iterator[ApiServer]:
    ours = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in ours}
    env.update(
        PYTHONPATH=str(PROJECT_ROOT),
        DATABASE_URL=str(db_path),
        REDIS_URL=redis_url,
        AUTOFORGE_API_KEYS=KEY,
    )
    with run_api_server(tmp_path, env, tmp_path / "api.log") as server:
        yield server


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def test_docs_and_redoc_render_every_operation_offline(api: ApiServer, tmp_path: Path) -> None:
    browser = chromium()
    document = httpx.get(f"{api.url}/openapi.json", timeout=10).json()
    operations = _operations(document)
    assert len(operations) >= 15

    # The browser really is offline: a script from a CDN does not load.
    probe = (
        f'data:text/html,<script src="{CDN_SCRIPT}"></script>'
        "<script>document.title = typeof SwaggerUIBundle</script>"
    )
    offline = browse(browser, tmp_path / "p0", probe, "--dump-dom", *RENDER, flags=LOOPBACK_ONLY)
    assert "<title>undefined</title>" in offline, offline[:2000]

    swagger = browse(
        browser, tmp_path / "p1", f"{api.url}/docs", "--dump-dom", *RENDER, flags=LOOPBACK_ONLY
    )
    for method, path, _ in operations:
        marker = f'data-path="{path}"'
        assert marker in swagger, f"Swagger UI did not render {method.upper()} {path}"
    assert "Unable to render this definition" not in swagger

    redoc = html.unescape(
        browse(
            browser, tmp_path / "p2", f"{api.url}/redoc", "--dump-dom", *RENDER, flags=LOOPBACK_ONLY
        )
    )
    for method, path, operation in operations:
        assert operation["summary"] in redoc, f"ReDoc did not render {method.upper()} {path}"

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "api-docs.html").write_text(swagger)
    screenshot = ARTIFACTS / "api-docs.png"
    screenshot.unlink(missing_ok=True)
    browse(
        browser,
        tmp_path / "p3",
        f"{api.url}/docs",
        f"--screenshot={screenshot}",
        *RENDER,
        flags=LOOPBACK_ONLY,
    )
    assert screenshot.read_bytes().startswith(b"\x89PNG"), "a PNG screenshot is kept"


JSON = {"Content-Type": "application/json"}
UNKNOWN_PROVIDER = {
    "prompt_id": "p",
    "provider": "nope",
    "model": "m",
    "test_cases": [{"name": "a", "scorers": ["exact"], "expected": "x"}],
}


#: Requests the API refuses with 422, each on another path through validation.
INVALID_REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("post", "/v1/jobs/canary", {"json": {"sleep_ms": -1}}),
    ("post", "/v1/jobs/canary", {"content": b"{not json", "headers": JSON}),
    ("post", "/v1/jobs/evaluation", {"json": UNKNOWN_PROVIDER}),
    ("get", "/v1/jobs", {"params": {"limit": 0}}),
    ("get", "/v1/jobs", {"params": {"cursor": "%%%"}}),
    ("post", "/v1/prompts", {"json": {}}),
    ("get", "/v1/prompts/{prompt_id}/score-history", {"params": {"bucket": "year"}}),
    ("post", "/v1/prompts/{prompt_id}/versions", {"json": {}}),
    ("get", "/v1/prompts/search", {"params": {"q": ""}}),
    ("post", "/v1/jobs/embedding", {"json": {"prompt_ids": ["p"], "all_stale": True}}),
    ("post", "/v1/jobs/embedding:batch", {"json": {"items": [{}]}}),
    ("post", "/v1/jobs/canary:batch", {"json": {"items": []}}),
    # Refused by the kind's own admission (no such replica), not by the body's schema.
    ("post", "/v1/jobs/replica-sync", {"json": {"replica": "no-such-replica"}}),
    ("post", "/v1/jobs/replica-sync:batch", {"json": {"items": [{"replica": "nope"}]}}),
]


def test_real_422s_fit_the_documented_schema(api: ApiServer) -> None:
    document = httpx.get(f"{api.url}/openapi.json", timeout=10).json()

    for method, path, request_args in INVALID_REQUESTS:
        documented = document["paths"][path][method]["responses"]["422"]
        schema = documented["content"]["application/json"]["schema"]
        validator = Draft202012Validator({**schema, "components": document["components"]})
        arguments = dict(request_args)
        response = httpx.request(
            method,
            api.url + path.replace("{prompt_id}", "no-such-prompt"),
            headers={"Authorization": f"Bearer {KEY}", **arguments.pop("headers", {})},
            timeout=10,
            **arguments,
        )

        where = f"{method.upper()} {path} {request_args}: {response.text}"
        assert response.status_code == 422, where
        body = response.json()
        assert [error.message for error in validator.iter_errors(body)] == [], where
        assert body["error"]["code"] == "validation_error", where
        # The schema describes this API's shape, not FastAPI's default one.
        assert list(validator.iter_errors({"detail": body["detail"]})), where
