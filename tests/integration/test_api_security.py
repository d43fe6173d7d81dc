"""What a client can send that the API must refuse cleanly: no or wrong keys, bad bodies,
oversized bodies. Every refusal is JSON, and never a 500; the keys never leak."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest

from core.local_secrets import API_KEY_FILE
from core.settings import Settings
from db.repositories.jobs import JobRepository
from tests.support.api import (
    AUTH,
    KEY,
    OTHER_KEY,
    TestClient,
    api_settings,
    client_for,
    ledger,
)

pytestmark = pytest.mark.integration

LIMIT = 1024


@pytest.fixture
def app_settings(migrated: Settings, db_path: Path, redis_url: str) -> Settings:
    return api_settings(db_path, redis_url, api_max_body_bytes=LIMIT)


@pytest.fixture
def anonymous(app_settings: Settings) -> Iterator[TestClient]:
    """A client that sends no key unless told to."""
    with client_for(app_settings) as client:
        yield client


def _job_count(settings: Settings) -> int:
    with ledger(settings) as db, db.read_session() as session:
        return len(JobRepository(session).list_recent(limit=1000))


def _field_locs(response: httpx2.Response) -> list[list[Any]]:
    return [error["loc"] for error in response.json()["detail"]]


class TestAuth:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/jobs"),
            ("GET", "/v1/jobs/some-id"),
            ("POST", "/v1/jobs/canary"),
            ("POST", "/v1/jobs/teleport"),
            ("POST", "/v1/jobs/some-id/cancel"),
            ("GET", "/v1/prompts?user_id=u"),
        ],
    )
    def test_no_key_is_401_with_a_bearer_challenge(
        self, anonymous: TestClient, method: str, path: str
    ) -> None:
        response = anonymous.request(method, path, json={})

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["error"]["code"] == "not_authenticated"

    @pytest.mark.parametrize(
        "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer ", KEY, f"Token {KEY}", ""]
    )
    def test_malformed_header_is_401(self, anonymous: TestClient, header: str) -> None:
        response = anonymous.get("/v1/jobs", headers={"Authorization": header})

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"

    @pytest.mark.parametrize("key", ["wrong", KEY + "x", KEY[:-1], KEY.upper(), "ключ"])
    def test_wrong_key_is_403(self, anonymous: TestClient, key: str) -> None:
        # As bytes: a client may send any octets, not only ASCII.
        header = b"Bearer " + key.encode()
        response = anonymous.get("/v1/jobs", headers={b"Authorization": header})

        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"

    @pytest.mark.parametrize("key", [KEY, OTHER_KEY])
    def test_every_configured_key_is_accepted(self, anonymous: TestClient, key: str) -> None:
        headers = {"Authorization": f"bearer {key}"}

        assert anonymous.get("/v1/jobs", headers=headers).status_code == 200
        assert anonymous.post("/v1/jobs/canary", json={}, headers=headers).status_code == 202

    def test_probes_need_no_key(self, anonymous: TestClient) -> None:
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
        assert anonymous.get("/metrics/ledger").status_code == 200

    def test_no_keys_configured_refuses_everything(
        self, migrated: Settings, db_path: Path, redis_url: str
    ) -> None:
        settings = api_settings(db_path, redis_url, autoforge_api_keys=None)
        with client_for(settings) as client:
            responses = [
                client.get("/v1/jobs"),
                client.get("/v1/jobs", headers={"Authorization": "Bearer anything"}),
                client.post("/v1/jobs/canary", json={}, headers=AUTH),
            ]
            healthz = client.get("/healthz")

        for response in responses:
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "auth_not_configured"
            assert "AUTOFORGE_API_KEYS" in response.json()["error"]["message"]
        assert healthz.status_code == 200
        assert _job_count(settings) == 0

    def test_locally_generated_key_is_accepted(
        self, migrated: Settings, db_path: Path, redis_url: str, tmp_path: Path
    ) -> None:
        # What `autoforge up` leaves in ./data/ (the tests run in tmp_path).
        generated = "afk_generated-for-this-checkout"
        (tmp_path / "data").mkdir()
        (tmp_path / "data" / API_KEY_FILE).write_text(generated + "\n")
        settings = api_settings(db_path, redis_url, autoforge_api_keys=None)

        with client_for(settings) as client:
            accepted = client.get("/v1/jobs", headers={"Authorization": f"Bearer {generated}"})
            refused = client.get("/v1/jobs", headers=AUTH)

        assert accepted.status_code == 200
        assert refused.status_code == 403

    def test_keys_never_appear_in_logs_or_responses(
        self, app_settings: Settings, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        texts: list[str] = []
        with client_for(app_settings) as client:
            for headers in (
                AUTH,
                {"Authorization": f"Bearer {OTHER_KEY}"},
                {"Authorization": f"Bearer {KEY}-wrong"},
                {"Authorization": f"Basic {KEY}"},
                {},
            ):
                for method, path, body in (
                    ("POST", "/v1/jobs/canary", {"sleep_ms": 1}),
                    ("POST", "/v1/jobs/canary", {"sleep_ms": -1}),
                    ("GET", "/v1/jobs", None),
                    ("GET", "/v1/jobs/missing", None),
                    ("POST", "/v1/jobs/missing/cancel", None),
                ):
                    response = client.request(method, path, json=body, headers=headers)
                    texts.append(response.text)
                    texts.extend(f"{name}: {value}" for name, value in response.headers.items())
            texts.append(client.get("/metrics").text)
            texts.append(client.get("/metrics/ledger").text)
            texts.append(client.get("/readyz").text)
            texts.append(client.get("/openapi.json").text)

        for key in (KEY, OTHER_KEY):
            assert key not in caplog.text
            for text in texts:
                assert key not in text


class TestBadBodies:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"sleep_ms": -1}, "sleep_ms"),
            ({"sleep_ms": 60_001}, "sleep_ms"),
            ({"fail_times": 11}, "fail_times"),
            ({"fail_times": -1}, "fail_times"),
            ({"sleep_ms": "soon"}, "sleep_ms"),
            ({"sleep_ms": 1.5}, "sleep_ms"),
            ({"fail_times": None}, "fail_times"),
            ({"sleep_ms": 1, "priority": "high"}, "priority"),
        ],
    )
    def test_invalid_canary_body_is_422_naming_the_field(
        self, client: TestClient, app_settings: Settings, body: dict[str, Any], field: str
    ) -> None:
        response = client.post("/v1/jobs/canary", json=body)

        assert response.status_code == 422
        assert ["body", field] in _field_locs(response)
        assert response.json()["error"]["code"] == "validation_error"
        assert field in response.json()["error"]["message"]
        assert _job_count(app_settings) == 0

    @pytest.mark.parametrize(
        "content",
        [b"{", b'{"sleep_ms": }', b"not json", b"\xff\xfe", b"[1, 2]", b"null", b'"text"', b""],
    )
    def test_body_that_is_not_a_json_object_is_422(
        self, client: TestClient, app_settings: Settings, content: bytes
    ) -> None:
        response = client.post(
            "/v1/jobs/canary", content=content, headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 422
        assert response.json()["error"]["code"] == "validation_error"
        assert all(loc[0] == "body" for loc in _field_locs(response))
        assert _job_count(app_settings) == 0

    def test_non_json_content_type_is_422(self, client: TestClient) -> None:
        response = client.post(
            "/v1/jobs/canary", content=b"sleep_ms=1", headers={"Content-Type": "text/plain"}
        )

        assert response.status_code == 422

    @pytest.mark.parametrize("key", ["", "k" * 256])
    def test_bad_idempotency_key_is_422_naming_the_header(
        self, client: TestClient, key: str
    ) -> None:
        response = client.post("/v1/jobs/canary", json={}, headers={"Idempotency-Key": key})

        assert response.status_code == 422
        assert ["header", "idempotency-key"] in _field_locs(response)

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/jobs/%00"),
            ("GET", "/v1/jobs/" + "x" * 5000),
            ("POST", "/v1/jobs/%F0%9F%92%A5/cancel"),
            ("POST", "/v1/jobs/..%2F..%2Fetc/retry"),
            ("GET", "/v1/nothing-here"),
            ("DELETE", "/v1/jobs"),
            ("PUT", "/v1/jobs/canary"),
        ],
    )
    def test_odd_requests_get_json_client_errors(
        self, client: TestClient, method: str, path: str
    ) -> None:
        response = client.request(method, path)

        assert 400 <= response.status_code < 500
        assert "code" in response.json()["error"]


class TestBodyLimit:
    def test_declared_oversized_body_is_413(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        body = b'{"sleep_ms": 1, "padding": "' + b"x" * LIMIT + b'"}'

        response = client.post(
            "/v1/jobs/canary", content=body, headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert str(LIMIT) in response.json()["error"]["message"]
        assert _job_count(app_settings) == 0

    def test_streamed_oversized_body_is_413(
        self, client: TestClient, app_settings: Settings
    ) -> None:
        def chunks() -> Iterator[bytes]:
            yield b'{"sleep_ms": 1, "padding": "'
            for _ in range(8):
                yield b"x" * 256
            yield b'"}'

        # A generator body is sent chunked, without Content-Length.
        response = client.post(
            "/v1/jobs/canary", content=chunks(), headers={"Content-Type": "application/json"}
        )

        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"
        assert _job_count(app_settings) == 0

    def test_lying_content_length_is_still_counted(self, client: TestClient) -> None:
        def chunks() -> Iterator[bytes]:
            yield b"x" * (LIMIT + 1)

        response = client.post(
            "/v1/jobs/canary",
            content=chunks(),
            headers={"Content-Type": "application/json", "Content-Length": "10"},
        )

        assert response.status_code == 413

    def test_body_at_the_limit_is_read(self, client: TestClient) -> None:
        prefix, suffix = b'{"sleep_ms": 1, "padding": "', b'"}'
        body = prefix + b"x" * (LIMIT - len(prefix) - len(suffix)) + suffix
        assert len(body) == LIMIT

        response = client.post(
            "/v1/jobs/canary", content=body, headers={"Content-Type": "application/json"}
        )

        # Read and validated: refused for its unknown field, not for its size.
        assert response.status_code == 422
        assert ["body", "padding"] in _field_locs(response)
