"""The Celery app's settings: what workers report about themselves holds no password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from celery.app.utils import filter_hidden_settings

from tests.conftest import make_settings
from workers.app import create_celery, split_credentials

PASSWORD = "pw-SECRET-e1f0"


@pytest.mark.parametrize(
    ("url", "bare", "credentials"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", {}),
        (f"redis://:{PASSWORD}@10.0.0.5:6379/2", "redis://10.0.0.5:6379/2", {"password": PASSWORD}),
        (
            f"rediss://app:{PASSWORD}@cache.example:6380/0?ssl_cert_reqs=required",
            "rediss://cache.example:6380/0?ssl_cert_reqs=required",
            {"username": "app", "password": PASSWORD},
        ),
        ("redis://:p%40ss%3Aword@h:1/0", "redis://h:1/0", {"password": "p@ss:word"}),
        (
            f"unix:///run/redis.sock?db=1&password={PASSWORD}",
            "unix:///run/redis.sock?db=1",
            {"password": PASSWORD},
        ),
    ],
)
def test_credentials_leave_the_url(url: str, bare: str, credentials: dict[str, str]) -> None:
    assert split_credentials(url) == (bare, credentials)


def test_the_settings_celery_reports_hold_no_password(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "db", redis_url=f"redis://:{PASSWORD}@127.0.0.1:6379/0")
    app = create_celery(settings)
    try:
        assert app.conf.redbeat_redis_options["password"] == PASSWORD  # RedBeat still has it
        for with_defaults in (False, True):
            # What `inspect conf` (Flower's Config tab) shows.
            shown = filter_hidden_settings(app.conf.table(with_defaults=with_defaults))
            assert PASSWORD not in json.dumps(shown, default=repr)
    finally:
        app.close()
