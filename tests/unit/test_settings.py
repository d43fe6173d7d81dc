"""Settings: defaults, each bad or missing variable's error, and no secret in any output."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.app import create_app
from core.database_url import parse_database_url
from core.errors import ConfigurationError
from core.settings import load_settings
from tasks.registry import kind_registry
from workers.app import create_celery

TOKEN = "tok-7f3c9a-SECRET-do-not-print"


def test_local_default_is_a_file_under_data(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None)
    assert settings.app_env == "local"
    assert settings.database.kind == "local"
    assert settings.database.path == (tmp_path / "data" / "autoforge.db").resolve()
    assert settings.db_busy_timeout_ms == 5000
    assert settings.db_synchronous == "NORMAL"


def test_env_file_is_read_and_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=from-dotenv.db\nDB_BUSY_TIMEOUT_MS=1234\n")
    monkeypatch.setenv("DB_BUSY_TIMEOUT_MS", "777")
    settings = load_settings()
    assert settings.database.path == (tmp_path / "from-dotenv.db").resolve()
    assert settings.db_busy_timeout_ms == 777


@pytest.mark.parametrize(
    ("env", "missing"),
    [
        ({"APP_ENV": "production"}, ["TURSO_DATABASE_URL", "TURSO_AUTH_TOKEN"]),
        (
            {"APP_ENV": "production", "TURSO_DATABASE_URL": "libsql://db.example.io"},
            ["TURSO_AUTH_TOKEN"],
        ),
        ({"APP_ENV": "production", "TURSO_AUTH_TOKEN": TOKEN}, ["TURSO_DATABASE_URL"]),
        ({"APP_ENV": "staging"}, ["TURSO_STAGING_DATABASE_URL", "TURSO_STAGING_AUTH_TOKEN"]),
        (
            {"APP_ENV": "staging", "TURSO_STAGING_DATABASE_URL": "libsql://stg.example.io"},
            ["TURSO_STAGING_AUTH_TOKEN"],
        ),
        # The production variables do not satisfy staging, and vice versa.
        (
            {
                "APP_ENV": "staging",
                "TURSO_DATABASE_URL": "libsql://db.example.io",
                "TURSO_AUTH_TOKEN": TOKEN,
            },
            ["TURSO_STAGING_DATABASE_URL", "TURSO_STAGING_AUTH_TOKEN"],
        ),
    ],
)
def test_remote_environments_require_url_and_token(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], missing: list[str]
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    # A local DATABASE_URL must never be used as a fallback.
    monkeypatch.setenv("DATABASE_URL", "fallback.db")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert f"requires {' and '.join(missing)}" in message
    assert "refusing to fall back to a local file" in message
    assert TOKEN not in message


def test_remote_environment_rejects_a_local_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TURSO_DATABASE_URL", "./prod.db")
    monkeypatch.setenv("TURSO_AUTH_TOKEN", TOKEN)
    with pytest.raises(ConfigurationError, match="TURSO_DATABASE_URL names a local file"):
        load_settings(_env_file=None)


def test_production_settings_resolve_remote_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "PRODUCTION")
    monkeypatch.setenv("TURSO_DATABASE_URL", "libsql://db-org.turso.io")
    monkeypatch.setenv("TURSO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6379/0")
    settings = load_settings(_env_file=None)
    assert settings.database.kind == "remote"
    assert settings.database.url == "libsql://db-org.turso.io"
    assert settings.database.auth_token is not None
    assert settings.database.auth_token.get_secret_value() == TOKEN
    assert settings.secrets() == [TOKEN]
    for text in (
        repr(settings),
        str(settings),
        repr(settings.database),
        settings.database.describe(),
    ):
        assert TOKEN not in text


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("APP_ENV", "dev", "APP_ENV: Input should be 'local', 'staging' or 'production'"),
        (
            "DB_BUSY_TIMEOUT_MS",
            "-1",
            "DB_BUSY_TIMEOUT_MS: Input should be greater than or equal to 0",
        ),
        ("DB_BUSY_TIMEOUT_MS", "soon", "DB_BUSY_TIMEOUT_MS: Input should be a valid integer"),
        ("DB_SYNCHRONOUS", "sometimes", "DB_SYNCHRONOUS: Input should be 'OFF', 'NORMAL', 'FULL'"),
        ("DB_SLOW_QUERY_MS", "-3", "DB_SLOW_QUERY_MS: Input should be greater than or equal to 0"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL: Input should be"),
        (
            "DATABASE_URL",
            "postgresql://u@h/db",
            "DATABASE_URL has an unsupported scheme 'postgresql'",
        ),
        ("DATABASE_URL", "   ", "DATABASE_URL is empty"),
        ("DATABASE_URL", ":memory:", "DATABASE_URL must name a database file"),
        (
            "DATABASE_URL",
            "http://db.example.io",
            "DATABASE_URL uses plain http:// to a non-loopback",
        ),
        ("DATABASE_URL", "libsql://", "DATABASE_URL has no host"),
    ],
)
def test_each_bad_variable_gets_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, problem: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_env_file=None)
    assert problem in str(caught.value)


def test_unsupported_url_error_lists_accepted_forms_and_hides_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"mysql://admin:{TOKEN}@db.example.io/app")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert "a file path, file:, sqlite+libsql://, libsql://, https://" in message
    assert TOKEN not in message


@pytest.mark.parametrize(
    ("raw", "kind", "where"),
    [
        ("data/x.db", "local", "{base}/data/x.db"),
        ("/var/lib/af.db", "local", "/var/lib/af.db"),
        ("file:data/x.db", "local", "{base}/data/x.db"),
        ("file:///var/lib/af.db", "local", "/var/lib/af.db"),
        ("sqlite+libsql:///data/x.db", "local", "{base}/data/x.db"),
        ("sqlite+libsql://127.0.0.1:8080", "remote", "http://127.0.0.1:8080"),
        ("sqlite+libsql://db.example.io/?secure=true", "remote", "https://db.example.io"),
        ("libsql://db-org.turso.io", "remote", "libsql://db-org.turso.io"),
        ("https://db-org.turso.io", "remote", "https://db-org.turso.io"),
        ("http://localhost:8080", "remote", "http://localhost:8080"),
        ("http://[::1]:8080", "remote", "http://[::1]:8080"),
    ],
)
def test_accepted_url_forms(tmp_path: Path, raw: str, kind: str, where: str) -> None:
    target = parse_database_url(raw, variable="DATABASE_URL", base_dir=tmp_path)
    assert target.kind == kind
    expected = where.format(base=tmp_path)
    if kind == "local":
        assert target.path == Path(expected).resolve()
    else:
        assert target.url == expected


def test_plain_http_to_a_listed_private_host_is_an_explicit_opt_in(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TURSO_DATABASE_URL", "http://sqld:8080")
    monkeypatch.setenv("TURSO_AUTH_TOKEN", TOKEN)
    with pytest.raises(ConfigurationError, match="DATABASE_PLAINTEXT_HOSTS"):
        load_settings(_env_file=None)
    monkeypatch.setenv("DATABASE_PLAINTEXT_HOSTS", "redis, sqld")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    assert load_settings(_env_file=None).database.url == "http://sqld:8080"


def test_token_in_url_query_becomes_a_secret(tmp_path: Path) -> None:
    target = parse_database_url(
        f"libsql://db-org.turso.io?authToken={TOKEN}", variable="DATABASE_URL", base_dir=tmp_path
    )
    assert target.url == "libsql://db-org.turso.io"
    assert target.auth_token is not None
    assert target.auth_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(target)


def test_remote_environments_require_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "staging")
    monkeypatch.setenv("TURSO_STAGING_DATABASE_URL", "libsql://stg.example.io")
    monkeypatch.setenv("TURSO_STAGING_AUTH_TOKEN", TOKEN)
    with pytest.raises(ConfigurationError, match="APP_ENV=staging requires REDIS_URL"):
        load_settings(_env_file=None)


def test_redis_password_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://default:{TOKEN}@cache.internal:6380/2")
    settings = load_settings(_env_file=None)
    assert settings.redis_display() == "redis://default:***@cache.internal:6380/2"
    assert TOKEN in settings.secrets()
    assert TOKEN not in repr(settings)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"JOB_MAX_ATTEMPTS": '{"canary": 0}'}, "JOB_MAX_ATTEMPTS values must be at least 1"),
        ({"JOB_MAX_ATTEMPTS": "three"}, "JOB_MAX_ATTEMPTS"),
        ({"API_PORT": "99999"}, "API_PORT: Input should be less than or equal to 65535"),
        ({"BACKUP_CRON": "every night"}, "BACKUP_CRON: expected a cron expression of 5 fields"),
        (
            {"SWEEPER_INTERVAL_S": "60", "OUTBOX_REPUBLISH_AFTER_S": "30"},
            "OUTBOX_REPUBLISH_AFTER_S (30) must exceed SWEEPER_INTERVAL_S (60)",
        ),
        ({"JOB_LEASE_S": "0.5"}, "JOB_LEASE_S: Input should be greater than or equal to 1"),
    ],
)
def test_pipeline_settings_are_checked(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(_env_file=None)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"CELERY_VISIBILITY_TIMEOUT_S": "600"},
            "CELERY_VISIBILITY_TIMEOUT_S (600) must exceed the longest job time limit",
        ),
        (
            {"JOB_TIME_LIMITS_S": '{"canary": 30, "nightly": 5}'},
            "JOB_TIME_LIMITS_S names unknown job kinds ['nightly']",
        ),
    ],
)
def test_per_kind_settings_are_checked_against_the_kinds_when_an_app_is_built(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], problem: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings(_env_file=None)  # the settings alone do not know the kinds
    for build in (create_celery, create_app):
        with pytest.raises(ConfigurationError) as caught:
            build(settings)
        assert problem in str(caught.value)


def test_per_kind_limits_override_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_TIME_LIMITS_S", '{"canary": 30}')
    monkeypatch.setenv("JOB_MAX_ATTEMPTS", '{"canary": 3}')
    monkeypatch.setenv("CELERY_VISIBILITY_TIMEOUT_S", "3700")
    settings = load_settings(_env_file=None)
    kinds = kind_registry()
    kinds.check_settings(settings)
    assert kinds.time_limit_s(settings, "canary") == 30
    assert kinds.max_attempts(settings, "canary") == 3
    assert kinds.time_limit_s(settings, "backup") == 3600


def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("TURSO_DATABASE_URL", "libsql://db-org.turso.io")
    monkeypatch.setenv("TURSO_AUTH_TOKEN", TOKEN)
    monkeypatch.setenv("REDIS_URL", "redis://redis.internal:6379/0")


def test_embedding_stale_prompts_is_scheduled_in_local_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert load_settings(_env_file=None).embed_stale_cron == "*/10 * * * *"
    _production(monkeypatch)
    assert load_settings(_env_file=None).embed_stale_cron == "off"
    monkeypatch.setenv("EMBED_STALE_CRON", "0 * * * *")
    assert load_settings(_env_file=None).embed_stale_cron == "0 * * * *"
    monkeypatch.setenv("EMBED_STALE_CRON", "hourly")
    with pytest.raises(ConfigurationError, match="EMBED_STALE_CRON"):
        load_settings(_env_file=None)


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"EMBEDDING_DIM": "1536"}, "EMBEDDING_DIM: the vector index holds 384-d vectors"),
        ({"EMBEDDING_MODEL": "bge-small"}, "the local provider runs all-MiniLM-L6-v2-onnx-int8"),
        ({"EMBEDDING_PROVIDER": "openai"}, "EMBEDDING_PROVIDER=openai requires EMBEDDING_MODEL"),
    ],
)
def test_embedding_settings_that_cannot_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], problem: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=problem):
        load_settings(_env_file=None)
    monkeypatch.setenv("EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("EMBEDDING_MODEL", "text-embedding-3-small")
    monkeypatch.delenv("EMBEDDING_DIM", raising=False)
    settings = load_settings(_env_file=None)
    assert (settings.embedding_model, settings.embedding_dim) == ("text-embedding-3-small", 384)
