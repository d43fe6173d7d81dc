"""What ``config show`` may print: every setting under its variable, credentials hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from core.settings_view import redact_url, settings_view
from tasks.registry import kind_registry
from tests.conftest import make_settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
        ("https://user:pa55@proxy.example:8443/v1", "https://user:***@proxy.example:8443/v1"),
        ("redis://:s3cret@redis.internal:6379/0", "redis://:***@redis.internal:6379/0"),
        ("redis://default:s3cret@redis.internal/1", "redis://default:***@redis.internal/1"),
        ("https://ghp_token@host.example/x", "https://***@host.example/x"),
        (
            "libsql://db.example.io?authToken=abc.def&tls=1",
            "libsql://db.example.io?authToken=***&tls=1",
        ),
        ("http://h.example/p?api_key=k1&x=y", "http://h.example/p?api_key=***&x=y"),
        ("not a url", "not a url"),
        ("http://[::1", "***"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_every_setting_is_listed_under_its_variable_with_secrets_hidden(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "x.db",
        redis_url="redis://default:redis-PW-1@cache.internal:6380/2",
        openai_base_url="https://proxy-user:proxy-PW-2@llm.internal/v1",
        openai_api_key="sk-PW-3",
        autoforge_api_keys="afk_PW-4,afk_PW-5",
        flower_basic_auth="admin:PW-6",
        backup_s3_secret_access_key="PW-7",
        backup_s3_access_key_id="AKIA-visible",
        turso_auth_token="PW-8",
    )

    kinds = kind_registry()
    view = {
        line.variable: line for line in settings_view(settings, in_force=kinds.effective(settings))
    }

    assert list(view) == [name.upper() for name in Settings.model_fields]
    assert view["REDIS_URL"].value == "redis://default:***@cache.internal:6380/2"
    assert view["OPENAI_BASE_URL"].value == "https://proxy-user:***@llm.internal/v1"
    for variable in (
        "OPENAI_API_KEY",
        "AUTOFORGE_API_KEYS",
        "FLOWER_BASIC_AUTH",
        "BACKUP_S3_SECRET_ACCESS_KEY",
        "TURSO_AUTH_TOKEN",
    ):
        assert view[variable].value == "***", variable
    assert view["BACKUP_S3_ACCESS_KEY_ID"].value == "AKIA-visible"
    assert view["AUTOFORGE_API_KEY"].value is None
    assert view["LOG_FORMAT"].value == "text"
    assert view["LOG_FORMAT"].source == "default"
    assert view["REDIS_URL"].source == "set"
    assert view["JOB_MAX_ATTEMPTS"].value["canary"] == 11
    assert view["JOB_MAX_ATTEMPTS"].source == "default"
    assert "PW-" not in repr([line.value for line in view.values()])
