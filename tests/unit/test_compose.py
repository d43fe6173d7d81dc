"""docker-compose.yml, the Dockerfile and .dockerignore, checked without Docker.

Docker cannot run where these tests run, so the compose file is kept honest here: every
variable given to our containers is a setting, required secrets use ``${VAR:?}``, every
long-running service has a health check, every command and health check runs an entry
point that exists, every queue has a worker, images are pinned, and the settings the
containers would build from the file validate. Every setting is passed through or left at
its default for a stated reason; replica syncs reach a worker on the shared volume; the
local embedding model is in the locked wheels the image installs; the build context keeps
what the image installs.
"""

from __future__ import annotations

import ast
import base64
import fnmatch
import importlib
import importlib.util
import re
import shlex
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any

import click
import pytest
import typer.main
import yaml
from celery import Celery
from pydantic import SecretStr

from core.settings import Settings
from tasks.registry import kind_registry

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_ENV_EXAMPLE = ROOT / "compose.env.example"

# Without these the system cannot run (or back up) in production: compose must refuse to
# start when one is missing. OPENAI_API_KEY is optional (only the `openai` provider).
REQUIRED = {
    "SQLD_AUTH_JWT_KEY",
    "SQLD_AUTH_TOKEN",
    "REDIS_PASSWORD",
    "AUTOFORGE_API_KEYS",
    "FLOWER_BASIC_AUTH",
    "MINIO_ROOT_PASSWORD",
    "BACKUP_S3_ACCESS_KEY_ID",
    "BACKUP_S3_SECRET_ACCESS_KEY",
    "BACKUP_ENCRYPTION_KEY",
}
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|JWT_KEY|_AUTH\b|API_KEY")
_REFERENCE = re.compile(r"(?<!\$)\$\{(?P<name>\w+)(?:(?P<op>:\?|:-|\?|-)(?P<arg>[^}]*))?\}")


def _compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _ours() -> dict[str, dict[str, Any]]:
    """The services that run our image."""
    return {name: service for name, service in _services().items() if "build" in service}


def _one_shot(name: str) -> bool:
    """Runs once to completion: restart "no" and awaited with service_completed_successfully."""
    if _services()[name].get("restart") != "no":
        return False
    return any(
        (service.get("depends_on") or {}).get(name, {}).get("condition")
        == "service_completed_successfully"
        for service in _services().values()
    )


def _setting_names() -> dict[str, Any]:
    """Environment variable names of the settings, with each field's annotation."""
    hints = typing.get_type_hints(Settings)
    return {name.upper(): hints[name] for name in Settings.model_fields}


def _is_secret(annotation: Any) -> bool:
    return SecretStr in (annotation, *typing.get_args(annotation))


def _references(value: Any) -> list[re.Match[str]]:
    return list(_REFERENCE.finditer(str(value)))


def _all_references() -> list[re.Match[str]]:
    """Every ${...} in the file's values (not its comments)."""

    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [text for value in node.values() for text in strings(value)]
        if isinstance(node, list):
            return [text for value in node for text in strings(value)]
        return [str(node)]

    return [match for text in strings(_compose()) for match in _references(text)]


def _interpolate(value: Any, env: dict[str, str]) -> str:
    """What compose would substitute, with ``env`` as the --env-file."""

    def one(match: re.Match[str]) -> str:
        name, op = match["name"], match["op"]
        if op == ":?":
            if not env.get(name):
                raise LookupError(f"{name}: {match['arg']}")
            return env[name]
        if op == ":-":
            return env.get(name) or match["arg"]
        return env.get(name, "")

    return _REFERENCE.sub(one, str(value)).replace("$$", "$")


def _example_values() -> dict[str, str]:
    """Values an operator would put in .env.compose (well-formed, not real)."""
    return {
        "SQLD_AUTH_JWT_KEY": "a" * 43,
        "SQLD_AUTH_TOKEN": "header.payload.signature",
        "REDIS_PASSWORD": "s3cretRedis",
        "AUTOFORGE_API_KEYS": "afk_one,afk_two",
        "FLOWER_BASIC_AUTH": "admin:pw",
        "MINIO_ROOT_PASSWORD": "minio-root-pw",
        "BACKUP_S3_ACCESS_KEY_ID": "autoforge-backups",
        "BACKUP_S3_SECRET_ACCESS_KEY": "minio-backups-pw",
        "BACKUP_ENCRYPTION_KEY": base64.b64encode(bytes(range(32))).decode(),
    }


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("service", sorted(_ours()))
def test_every_variable_our_containers_get_is_a_setting(service: str) -> None:
    unknown = set(_ours()[service]["environment"]) - set(_setting_names())
    assert not unknown, f"{service} sets {sorted(unknown)}, which no setting reads"


def _container_settings(
    service: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    """The settings ``service`` would build, with ``env`` as the --env-file."""
    for name in _setting_names():
        monkeypatch.delenv(name, raising=False)
    for name, value in _ours()[service]["environment"].items():
        monkeypatch.setenv(name, _interpolate(value, env))
    return Settings(_env_file=None)


def _example_setting(name: str) -> str:
    """The value compose.env.example suggests (commented out) for ``name``, unquoted as
    compose reads it."""
    for line in COMPOSE_ENV_EXAMPLE.read_text().splitlines():
        if line.startswith(f"# {name}="):
            value = line.split("=", 1)[1].strip()
            return value[1:-1] if value[:1] == value[-1:] == "'" else value
    raise LookupError(f"compose.env.example suggests no {name}")


@pytest.mark.parametrize("service", sorted(_ours()))
def test_the_settings_our_containers_build_validate(
    service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Interpolate the file as compose would (empty optional values included), then build
    the settings from that environment: production, sqld, Redis, backups to MinIO."""
    settings = _container_settings(service, _example_values(), monkeypatch)

    assert settings.app_env == "production"
    assert settings.database.url == "http://sqld:8080"
    assert settings.redis_display() == "redis://:***@redis:6379/0"
    assert settings.backup_storage == "s3"
    assert settings.backup_s3_endpoint_url == "http://minio:9000"
    assert settings.backup_encryption_key is not None
    assert settings.data_dir == Path("/var/lib/autoforge")
    # Empty pass-through values fall back to the defaults.
    assert settings.backup_keep_daily == Settings.model_fields["backup_keep_daily"].default
    assert settings.backup_s3_prefix == Settings.model_fields["backup_s3_prefix"].default


# Settings compose leaves at their defaults, on purpose. A new setting must be passed
# through (`${VAR:-}` keeps its default) or named here with its reason.
LEFT_AT_DEFAULT = {
    # Only for `dev.py up` / `autoforge up` on one machine, or another environment.
    "DATABASE_URL", "TURSO_STAGING_DATABASE_URL", "TURSO_STAGING_AUTH_TOKEN",
    "EMBEDDED_REDIS_PORT", "BIND_HOST", "API_PORT", "FLOWER_PORT", "ALLOW_ECHO_PROVIDER",
    # The CLI's own key: given per command (--key), never baked into every container.
    "AUTOFORGE_API_KEY",
    # Fixed by the code (the vector index's dimension).
    "EMBEDDING_DIM",
    # Tuning whose defaults are the measured ones (README, "Configuration").
    "DB_BUSY_TIMEOUT_MS", "DB_SYNCHRONOUS", "DB_SLOW_QUERY_MS", "DB_ECHO", "DB_POOL_SIZE",
    "DB_MAX_OVERFLOW", "DB_POOL_RECYCLE_S", "DB_CONNECT_TIMEOUT_S", "DB_WRITE_MAX_ATTEMPTS",
    "DB_WRITE_MAX_SECONDS", "DB_WRITE_BACKOFF_INITIAL_S", "DB_WRITE_BACKOFF_MAX_S",
    "API_MAX_BODY_BYTES", "CELERY_VISIBILITY_TIMEOUT_S", "CELERY_UNACKED_RESTORE_INTERVAL_S",
    "JOB_LEASE_S", "OUTBOX_REPUBLISH_AFTER_S", "SWEEPER_INTERVAL_S", "JOB_RETRY_BACKOFF_S",
    "JOB_RETRY_BACKOFF_MAX_S", "PROVIDER_RATE_WINDOW_S", "BACKUP_MULTIPART_THRESHOLD_BYTES",
    "BACKUP_STEP_PAGES", "BACKUP_STEP_PAUSE_MS",
}  # fmt: skip


def test_every_setting_is_passed_or_left_at_its_default_on_purpose() -> None:
    passed = set(_compose()["x-app-env"]) | {
        name for service in _ours().values() for name in service["environment"]
    }
    settings = set(_setting_names())
    assert not passed & LEFT_AT_DEFAULT, "passed, yet listed as left at default"
    assert settings >= LEFT_AT_DEFAULT, sorted(LEFT_AT_DEFAULT - settings)
    forgotten = settings - passed - LEFT_AT_DEFAULT
    assert not forgotten, f"{sorted(forgotten)}: pass them through or say why not"


def test_replica_syncs_reach_a_worker_and_a_shared_volume(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each container's host name is its own id: the API and beat must route a sync to a
    queue that the workers consume, and the replica's file must be on a volume."""
    env = {**_example_values(), "REPLICAS": _example_setting("REPLICAS")}
    api, beat, worker = (
        _container_settings(s, env, monkeypatch) for s in ("api", "beat", "worker")
    )
    kinds = kind_registry()
    sync = kinds["replica-sync"]

    assert worker.replicas, "compose.env.example's REPLICAS declares a replica"
    consumed = set(kinds.consumed_queues(worker))
    for replica in worker.replicas:
        assert kinds.queue_of(api, sync, {"replica": replica.name}) in consumed
        assert kinds.queue_of(api, sync, {"all": True}) in consumed
        assert replica.path.is_relative_to(worker.data_dir), "not on the app-data volume"
    for entry in sync.periodic.load()(beat) if sync.periodic else []:
        assert kinds.queue_of(beat, sync, entry.arguments) in consumed
    # Named in the file, not each container's default (its own id): the same everywhere.
    hosts = {
        name: _interpolate(service["environment"].get("REPLICA_HOST", ""), env)
        for name, service in _ours().items()
    }
    assert all(hosts.values()), f"REPLICA_HOST left to each container's id: {hosts}"
    assert len(set(hosts.values())) == 1, hosts
    assert api.replica_host == beat.replica_host == worker.replica_host
    for name in ("api", "worker"):
        assert f"app-data:{worker.data_dir}" in _services()[name]["volumes"]
    # The API can serve stale-tolerant reads from it (same host, same volume).
    read = _container_settings("api", {**env, "READ_REPLICA": _example_setting("READ_REPLICA")},
                               monkeypatch)  # fmt: skip
    assert read.read_replica is not None


def test_embedding_jobs_have_what_they_need_in_the_image(monkeypatch: pytest.MonkeyPatch) -> None:
    """The local model's files come from wheels the image installs from the lock; nothing
    downloads or writes outside the data volume."""
    from providers.embeddings import local

    worker = _container_settings("worker", _example_values(), monkeypatch)
    assert worker.embedding_provider == "local"
    assert kind_registry()["embedding"].queue in set(kind_registry().consumed_queues(worker))

    lock = (ROOT / "requirements.lock").read_text()
    for distribution, _ in (local._MODEL_FILE, local._TOKENIZER_FILE):
        pinned = re.search(rf"^{re.escape(distribution)}==\S+ \\\n\s+--hash=sha256:", lock, re.M)
        assert pinned, f"requirements.lock does not pin {distribution} with its hash"
    for module in ("onnxruntime", "tokenizers", "numpy"):
        assert re.search(rf"^{module}==", lock, re.M), module
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements.lock" in dockerfile

    openai = _container_settings(
        "worker",
        {**_example_values(), "EMBEDDING_PROVIDER": "openai",
         "EMBEDDING_MODEL": _example_setting("EMBEDDING_MODEL")},
        monkeypatch,
    )  # fmt: skip
    assert openai.embedding_model != local.MODEL


def test_a_missing_required_secret_stops_compose() -> None:
    env = _example_values()
    del env["BACKUP_ENCRYPTION_KEY"]
    value = _ours()["worker"]["environment"]["BACKUP_ENCRYPTION_KEY"]
    with pytest.raises(LookupError, match="BACKUP_ENCRYPTION_KEY"):
        _interpolate(value, env)


def test_required_secrets_use_the_refusing_form_everywhere() -> None:
    references = _all_references()
    for name in REQUIRED:
        uses = [m for m in references if m["name"] == name]
        assert uses, f"{name} is never passed"
        for use in uses:
            assert use["op"] == ":?", f"{use[0]} must be ${{{name}:?why}}"
            assert use["arg"].strip(), f"{use[0]} must say why"


def test_no_secret_has_a_literal_or_default_value() -> None:
    settings = _setting_names()
    for service_name, service in _services().items():
        environment = service.get("environment") or {}
        for name, value in environment.items():
            secret = _is_secret(settings[name]) if name in settings else False
            if not (secret or _SECRET_NAME.search(name)):
                continue
            references = _references(value)
            where = f"{service_name}: {name}"
            assert references, f"{where} is written in the file"
            for reference in references:
                optional_empty = reference["op"] == ":-" and reference["arg"] == ""
                assert reference["op"] == ":?" or optional_empty, f"{where} has a default"


def test_the_example_env_file_names_every_variable_the_file_reads() -> None:
    example = {
        line.split("=", 1)[0].lstrip("# ").strip()
        for line in COMPOSE_ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("# ---")
    }
    referenced = {m["name"] for m in _all_references()}
    assert example >= REQUIRED
    assert referenced - example <= {
        # Optional knobs that keep their documented defaults (README, "Configuration").
        "BACKUP_S3_PREFIX", "BACKUP_COMPRESSION", "BACKUP_KEEP_WEEKLY", "BACKUP_KEEP_MONTHLY",
        "LEDGER_RETENTION_DAYS", "PROVIDER_TIMEOUT_S", "PROVIDER_MAX_RETRIES", "PROVIDER_RPM",
        "EVALUATION_MAX_CONCURRENCY", "JOB_TIME_LIMITS_S", "JOB_MAX_ATTEMPTS",
        "EMBEDDING_QUERY_CACHE_TTL_S",
    }  # fmt: skip


# --------------------------------------------------------------------------- services


@pytest.mark.parametrize("service", sorted(_services()))
def test_every_service_has_a_health_check_or_runs_once(service: str) -> None:
    definition = _services()[service]
    if _one_shot(service):
        assert "healthcheck" not in definition
        return
    check = definition.get("healthcheck")
    assert check, f"{service} has no health check"
    assert check["test"][0] in ("CMD", "CMD-SHELL")
    assert "curl" not in str(check["test"])
    assert "wget" not in str(check["test"])


def test_the_one_shot_services() -> None:
    assert {name for name in _services() if _one_shot(name)} == {"migrate", "minio-setup"}
    worker = _services()["worker"]["depends_on"]
    assert worker["minio-setup"]["condition"] == "service_completed_successfully"
    for name in _ours():
        if name != "migrate":
            assert _services()[name]["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            )


@pytest.mark.parametrize("service", sorted(_services()))
def test_images_are_pinned(service: str) -> None:
    definition = _services()[service]
    image = definition.get("image", "")
    if "build" in definition:
        return
    name, _, tag = image.rpartition(":")
    assert name, image
    assert tag not in ("", "latest"), image
    assert re.search(r"\d", tag), image
    if "minio" in name:
        assert tag.startswith("RELEASE."), image


def test_every_queue_has_a_worker() -> None:
    consumed: set[str] = set()
    for service in _ours().values():
        command = service.get("command", [])
        if command[:4] == ["celery", "-A", "workers.main", "worker"]:
            if "-Q" in command:
                consumed |= set(command[command.index("-Q") + 1].split(","))
            else:  # a worker started without -Q consumes every queue
                consumed |= set(kind_registry().queues)
    assert consumed == set(kind_registry().queues)


def test_state_lives_on_volumes() -> None:
    volumes = set(_compose()["volumes"])
    assert volumes == {"redis-data", "sqld-data", "minio-data", "app-data"}
    for name in ("worker", "api"):
        assert "app-data:/var/lib/autoforge" in _services()[name]["volumes"]
    assert "/var/lib/autoforge" in (ROOT / "Dockerfile").read_text()


# --------------------------------------------------------------------------- entry points


def _option_names(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def _assert_options(command: click.Command, args: list[str]) -> None:
    for arg in args:
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in _option_names(command), f"unknown option {arg}"


def _assert_celery(args: list[str]) -> None:
    from celery.bin.celery import celery as celery_cli

    assert args[:2] == ["-A", "workers.main"], args
    module = importlib.import_module("workers.main")
    assert isinstance(module.app, Celery)
    name, rest = args[2], args[3:]
    assert name in celery_cli.commands, f"celery has no {name!r} command"
    command = celery_cli.commands[name]
    if name == "flower":
        from flower.options import options as flower_options

        for arg in rest:
            assert arg.lstrip("-").split("=", 1)[0] in flower_options, arg
    elif name == "inspect":
        assert rest[0] == "ping"
        _assert_options(command, rest[1:])
    else:
        _assert_options(command, rest)


def _assert_uvicorn(args: list[str]) -> None:
    importlib.import_module("uvicorn.main")
    command = sys.modules["uvicorn.main"].main
    context = command.make_context("uvicorn", list(args))
    assert context.params["factory"] is True
    module, _, attribute = context.params["app"].partition(":")
    assert callable(getattr(importlib.import_module(module), attribute))


def _assert_autoforge(args: list[str]) -> None:
    from cli.main import app

    # Typer builds its own click-like command tree: walk it by name.
    command: Any = typer.main.get_command(app)
    for word in args:
        assert hasattr(command, "get_command"), f"autoforge {' '.join(args)}"
        command = command.get_command(None, word)
        assert command is not None, f"autoforge has no {' '.join(args)}"
    assert not hasattr(command, "get_command"), f"autoforge {' '.join(args)} is a group"


def _assert_python(args: list[str]) -> None:
    assert args[0] == "-c"
    tree = ast.parse(args[1])
    for node in ast.walk(tree):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
            imported = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(imported, alias.name), f"{node.module}.{alias.name}"
        for module in modules:
            assert importlib.util.find_spec(module) is not None, module


ENTRY_POINTS = {
    "celery": _assert_celery,
    "uvicorn": _assert_uvicorn,
    "autoforge": _assert_autoforge,
    "python": _assert_python,
}


def _commands(definition: dict[str, Any]) -> list[list[str]]:
    """The service's command and health check, as argument lists."""
    found = []
    if "command" in definition:
        found.append(list(definition["command"]))
    test = (definition.get("healthcheck") or {}).get("test")
    if test and test[0] == "CMD":
        found.append(list(test[1:]))
    elif test and test[0] == "CMD-SHELL":
        shell = test[1].split("||")[0].replace("$$", "$")
        found.append(shlex.split(shell))
    return found


@pytest.mark.parametrize("service", sorted(_ours()))
def test_every_command_is_a_real_entry_point(service: str) -> None:
    commands = _commands(_ours()[service])
    assert commands
    for command in commands:
        assert command[0] in ENTRY_POINTS, f"{service}: {command[0]} is not ours"
        ENTRY_POINTS[command[0]](command[1:])


# --------------------------------------------------------------------------- image


def test_the_image_runs_unprivileged_from_a_pinned_base() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", base.group(1)), base.group(1)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users
    assert users[-1] not in ("root", "0", "nobody")
    assert f"-o {users[-1]}" in dockerfile  # it owns its data folder
    assert "--require-hashes" in dockerfile


def test_secrets_and_local_state_stay_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".env", ".env.*", "data/", ".venv/", ".git/", "*.db"} <= ignored
    assert ".env.compose" in (ROOT / ".gitignore").read_text().split()


def test_the_build_context_keeps_what_the_image_installs_and_runs() -> None:
    patterns = [
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    document = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [
        name.rstrip("*") for name in document["tool"]["setuptools"]["packages"]["find"]["include"]
    ]
    needed = ["pyproject.toml", document["project"]["readme"], "requirements.lock",
              "alembic", "alembic.ini", *packages]  # fmt: skip
    for path in needed:
        assert (ROOT / path).exists(), path
        ignored_by = [p for p in patterns if fnmatch.fnmatch(path, p.removeprefix("**/"))]
        assert not ignored_by, f".dockerignore drops {path} ({ignored_by})"
