"""The one typed settings object, built once at start-up and passed in.

Nothing else in the code base reads ``os.environ``. Values come from the environment and,
optionally, a ``.env`` file in the working directory (the environment wins).

Staging and production never fall back to a local file: a missing URL or token there is
a start-up error naming the variable (unlike the reviewed code, seed section 1.1).
"""

from __future__ import annotations

import base64
import re
import socket
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from core.database_url import DatabaseTarget, parse_database_url
from core.errors import ConfigurationError

AppEnv = Literal["local", "staging", "production"]

#: The local embedder's model (providers.embeddings.local): all-MiniLM-L6-v2, int8 ONNX.
LOCAL_EMBEDDING_MODEL = "all-MiniLM-L6-v2-onnx-int8"
#: The dimension of the vector index (``prompt_embeddings.embedding``, revision 0009).
EMBEDDING_INDEX_DIM = 384
#: A schedule set to this is off.
CRON_OFF = "off"

# Which variables name the database (and its token) in each environment.
_REMOTE_VARIABLES: dict[str, tuple[str, str]] = {
    "staging": ("TURSO_STAGING_DATABASE_URL", "TURSO_STAGING_AUTH_TOKEN"),
    "production": ("TURSO_DATABASE_URL", "TURSO_AUTH_TOKEN"),
}


ReplicaProtocol = Literal["libsql", "turso-sync"]


class ReplicaConfig(BaseModel):
    """One local replica of the primary, declared in ``REPLICAS``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    path: Path
    sync_url: str = Field(repr=False)
    auth_token: SecretStr | None = Field(None, repr=False)
    protocol: ReplicaProtocol = "libsql"
    interval_s: float = Field(60.0, ge=1)
    #: The machine holding the file (its ``REPLICA_HOST``); default: this machine.
    host: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$")

    @field_validator("sync_url")
    @classmethod
    def _sync_url(cls, value: str) -> str:
        if value.startswith("libsql://"):
            value = "https://" + value.removeprefix("libsql://")
        return http_url(value)

    def host_or(self, default: str) -> str:
        """The machine that holds the file."""
        return self.host or default


class Settings(BaseSettings):
    """All configuration of AutoForge Jobs, validated in one place."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
        # An empty variable means "the default": docker-compose.yml passes optional
        # settings through as ${VAR:-}, which is empty when the operator set nothing.
        env_ignore_empty=True,
    )

    app_env: AppEnv = Field("local", description="local | staging | production")
    data_dir: Path = Field(Path("data"), description="Where local state lives (database, keys).")

    # URLs may carry a password or token: kept out of repr; see ``database`` for a safe view.
    database_url: str | None = Field(None, repr=False, description="local only")
    turso_staging_database_url: str | None = Field(None, repr=False)
    turso_staging_auth_token: SecretStr | None = Field(None, repr=False)
    turso_database_url: str | None = Field(None, repr=False)
    turso_auth_token: SecretStr | None = Field(None, repr=False)

    database_plaintext_hosts: str = Field(
        "", description="Comma-separated host names allowed over plain http:// (not loopback)."
    )

    db_busy_timeout_ms: int = Field(
        5000,
        ge=0,
        le=600_000,
        description="How long a read waits for its connection while the database is busy or "
        "(remote) unreachable. Waited in Python: SQLite's own busy_timeout is 0.",
    )
    db_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    db_slow_query_ms: float = Field(250.0, ge=0)
    db_echo: bool = False
    db_pool_size: int = Field(5, ge=1, le=100)
    db_max_overflow: int = Field(10, ge=0, le=100)
    db_pool_recycle_s: int = Field(3600, ge=1)
    db_connect_timeout_s: float = Field(10.0, gt=0)
    db_write_max_attempts: int = Field(
        8, ge=1, le=100, description="Runs of a write unit that met a busy database mid-way."
    )
    db_write_max_seconds: float = Field(
        30.0, gt=0, description="A write unit's whole budget, waits for the write lock included."
    )
    # Pauses between tries while the database is busy: short, because each try costs
    # microseconds and a long pause is time the lock may sit free.
    db_write_backoff_initial_s: float = Field(0.001, gt=0)
    db_write_backoff_max_s: float = Field(0.02, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="text: readable lines; json: one JSON object per line."
    )

    # --- the job pipeline -------------------------------------------------------------
    # May carry a password: kept out of repr; see ``redis_display()``.
    redis_url: SecretStr | None = Field(None, repr=False, description="required outside local")
    embedded_redis_port: int = Field(6399, ge=1, le=65535)
    bind_host: str = Field("127.0.0.1", description="Address the API and Flower listen on.")
    api_port: int = Field(8000, ge=1, le=65535)
    api_url: str = Field("http://127.0.0.1:8000", description="Where the CLI finds the API.")
    autoforge_api_keys: SecretStr | None = Field(None, repr=False)
    autoforge_api_key: SecretStr | None = Field(None, repr=False, description="the CLI's key")
    api_max_body_bytes: int = Field(1_048_576, ge=1024)
    flower_port: int = Field(5555, ge=1, le=65535)
    flower_basic_auth: SecretStr | None = Field(None, repr=False, description="user:password")
    worker_concurrency: int = Field(2, ge=1, le=64)

    celery_visibility_timeout_s: int = Field(3900, ge=10)
    celery_unacked_restore_interval_s: int = Field(5, ge=1)
    # A killed worker's jobs run again within JOB_LEASE_S + SWEEPER_INTERVAL_S. Renewal
    # is one UPDATE per worker every third of the lease, so a short lease is cheap.
    job_lease_s: float = Field(
        10.0, ge=1, description="A running job's lease; its worker renews it every third."
    )
    outbox_republish_after_s: float = Field(300.0, gt=0)
    sweeper_interval_s: float = Field(5.0, gt=0)
    job_retry_backoff_s: float = Field(2.0, gt=0)
    job_retry_backoff_max_s: float = Field(300.0, gt=0)
    # Overrides of the kinds' declared limits (jobs/kind.py), checked against the declared
    # kinds when an app is built (jobs.registry.KindRegistry.check_settings).
    job_time_limits_s: dict[str, int] = Field(
        default_factory=dict,
        description="Hard time limit per job kind (JSON), over the kind's own; the soft "
        "limit is 90% of it.",
    )
    job_max_attempts: dict[str, int] = Field(
        default_factory=dict,
        description="Attempts per job kind before it ends failed (JSON), over the kind's own.",
    )
    # --- evaluation runs: LLM providers --------------------------------------------------
    openai_base_url: str = Field(
        "https://api.openai.com/v1",
        description="Any OpenAI-compatible API (chat completions, embeddings).",
    )
    openai_api_key: SecretStr | None = Field(None, repr=False)
    openai_api_type: Literal["openai", "azure"] = Field(
        "openai",
        description="'azure': OPENAI_BASE_URL is an Azure OpenAI endpoint, models are "
        "deployment names.",
    )
    openai_api_version: str | None = Field(
        None, description="Azure OpenAI's api-version (required with OPENAI_API_TYPE=azure)."
    )
    provider_timeout_s: float = Field(60.0, gt=0, description="Per request.")
    provider_max_retries: int = Field(
        3, ge=0, le=10, description="Retries of one call on 429/5xx/timeouts."
    )
    provider_rpm: dict[str, int] = Field(
        default_factory=lambda: {"openai": 60},
        description="Requests per minute per provider, shared by all workers (JSON).",
    )
    provider_rate_window_s: float = Field(
        60.0, gt=0, description="The window of PROVIDER_RPM (60 s: requests per minute)."
    )
    evaluation_max_concurrency: int = Field(4, ge=1, le=64, description="Calls at once per run.")
    allow_echo_provider: bool | None = Field(
        None, description="The offline 'echo' provider; default: on in local, off elsewhere."
    )

    # --- embeddings: prompts searchable by meaning -----------------------------------------
    embedding_provider: Literal["local", "openai"] = Field(
        "local",
        description="local: a MiniLM model on this machine's CPU (no network); openai: the "
        "embeddings API at OPENAI_BASE_URL.",
    )
    embedding_model: str = Field(
        LOCAL_EMBEDDING_MODEL,
        description="The model whose vectors are stored and searched; stored with each vector.",
    )
    embedding_dim: int = Field(
        EMBEDDING_INDEX_DIM,
        description="Vector dimension; the vector index holds vectors of this size only.",
    )
    embedding_batch_size: int = Field(64, ge=1, le=2048, description="Texts per embed call.")
    embedding_query_cache_ttl_s: int = Field(
        3600, ge=0, description="How long a search query's vector stays cached in Redis (0: off)."
    )
    embed_stale_cron: str = Field(
        CRON_OFF,
        description="When beat embeds stale prompts ('off': never); default: every 10 minutes "
        "in local, off elsewhere.",
    )

    # --- backups ------------------------------------------------------------------------
    backup_storage: Literal["local", "s3"] = "local"
    backup_dir: Path = Field(Path("data/backups"), description="local storage folder")
    backup_s3_bucket: str | None = None
    backup_s3_prefix: str = "autoforge/backups/"
    backup_s3_endpoint_url: str | None = Field(None, description="R2, MinIO, ...; unset: AWS")
    backup_s3_region: str = Field("auto", description="'auto' suits R2; set a real AWS region")
    backup_s3_access_key_id: str | None = None
    backup_s3_secret_access_key: SecretStr | None = Field(None, repr=False)
    backup_multipart_threshold_bytes: int = Field(8 * 1024 * 1024, ge=5 * 1024 * 1024)
    backup_compression: Literal["zstd", "gzip", "none"] = "zstd"
    backup_encryption_key: SecretStr | None = Field(
        None, repr=False, description="base64 of 32 random bytes; AES-256-GCM when set"
    )
    # Large steps cost writers nothing (the copy reads one pinned WAL snapshot) and keep
    # the per-step pause from dominating: see bench/backup_bench.py.
    backup_step_pages: int = Field(8192, ge=1, description="pages copied per backup step")
    backup_step_pause_ms: float = Field(5.0, ge=0, description="pause between steps")
    backup_keep_daily: int = Field(7, ge=0)
    backup_keep_weekly: int = Field(4, ge=0)
    backup_keep_monthly: int = Field(12, ge=0)
    restore_drill_cron: str = "30 4 * * 0"

    ledger_retention_days: float = Field(30.0, gt=0)
    prune_cron: str = "17 4 * * *"
    backup_cron: str = "0 3 * * *"

    # --- replicas (tasks/replica_sync) -------------------------------------------------
    replicas: list[ReplicaConfig] = Field(
        default_factory=list,
        repr=False,
        description="Local replicas of the primary (JSON list of objects: name, path, "
        "sync_url, auth_token, protocol, interval_s, host).",
    )
    replica_host: str = Field(
        default_factory=socket.gethostname,
        description="This machine's name for replica routing: its workers consume "
        "replicas.<REPLICA_HOST>. Default: the host name.",
    )
    replica_sync_timeout_s: float = Field(
        60.0, gt=0, description="One sync's deadline; its process is killed after it."
    )
    replica_stale_after_s: float = Field(
        600.0, gt=0, description="/readyz reports a replica whose last success is older."
    )
    read_replica: str | None = Field(
        None,
        description="Serve reads that may be stale (prompt listings, score history) from "
        "this local libsql replica (a REPLICAS name); writes go to the primary.",
    )

    @model_validator(mode="before")
    @classmethod
    def _upper_case_choices(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("db_synchronous", "log_level"):
                if isinstance(data.get(key), str):
                    data[key] = data[key].upper()
            for key in ("app_env", "log_format", "embed_stale_cron"):
                if isinstance(data.get(key), str):
                    data[key] = data[key].lower()
            if data.get("embed_stale_cron") is None:
                # On where a developer wants search to just work, off where embedding
                # costs money or CPU that an operator should decide to spend.
                local = data.get("app_env", "local") == "local"
                data["embed_stale_cron"] = "*/10 * * * *" if local else CRON_OFF
        return data

    @model_validator(mode="after")
    def _check_database(self) -> Settings:
        # Resolving the target validates the URL forms and the required variables.
        _ = self.database
        return self

    @model_validator(mode="after")
    def _check_pipeline(self) -> Settings:
        # Which kinds exist, and so the longest time limit that the visibility timeout must
        # exceed, is known to the kinds' declarations: checked when an app is built.
        for name in ("job_time_limits_s", "job_max_attempts"):
            table: dict[str, int] = getattr(self, name)
            if any(value < 1 for value in table.values()):
                raise ValueError(f"{name.upper()} values must be at least 1")
        if self.outbox_republish_after_s <= self.sweeper_interval_s:
            # Else every sweep would publish every waiting job again.
            raise ValueError(
                f"OUTBOX_REPUBLISH_AFTER_S ({self.outbox_republish_after_s:g}) must exceed "
                f"SWEEPER_INTERVAL_S ({self.sweeper_interval_s:g})"
            )
        if self.backup_storage == "s3" and not self.backup_s3_bucket:
            raise ValueError("BACKUP_STORAGE=s3 requires BACKUP_S3_BUCKET")
        if self.backup_encryption_key is not None:
            try:
                key = base64.b64decode(self.backup_encryption_key.get_secret_value(), validate=True)
            except ValueError:
                key = b""
            if len(key) != 32:
                raise ValueError(
                    "BACKUP_ENCRYPTION_KEY must be base64 of exactly 32 bytes (make one with "
                    "`autoforge backup new-key`)"
                )
        if self.embedding_dim != EMBEDDING_INDEX_DIM:
            raise ValueError(
                f"EMBEDDING_DIM: the vector index holds {EMBEDDING_INDEX_DIM}-d vectors; a "
                "model must give vectors of that size (OpenAI's text-embedding-3 models do "
                "with EMBEDDING_DIM=384)"
            )
        if self.embedding_provider == "local" and self.embedding_model != LOCAL_EMBEDDING_MODEL:
            raise ValueError(
                f"EMBEDDING_MODEL: the local provider runs {LOCAL_EMBEDDING_MODEL} only"
            )
        if self.embedding_provider == "openai" and self.embedding_model == LOCAL_EMBEDDING_MODEL:
            raise ValueError(
                "EMBEDDING_PROVIDER=openai requires EMBEDDING_MODEL (e.g. text-embedding-3-small)"
            )
        names = [replica.name for replica in self.replicas]
        if len(set(names)) != len(names):
            raise ValueError(f"REPLICAS: replica names must be unique: {names}")
        if self.read_replica is not None:
            chosen = self.replica(self.read_replica)
            if chosen is None:
                raise ValueError(f"READ_REPLICA names no replica in REPLICAS ({names})")
            if chosen.protocol != "libsql":
                # pyturso takes the file for itself: another process cannot read it while
                # the sync holds it, and the sync cannot open it while a reader does.
                raise ValueError(
                    f"READ_REPLICA: {chosen.name!r} is a turso-sync replica; only libsql "
                    "replicas can serve reads to other processes"
                )
            if chosen.host_or(self.replica_host) != self.replica_host:
                raise ValueError(
                    f"READ_REPLICA: {chosen.name!r} is on host {chosen.host!r}, not on this "
                    f"one (REPLICA_HOST={self.replica_host!r})"
                )
        if self.app_env != "local" and (
            self.redis_url is None or not self.redis_url.get_secret_value()
        ):
            raise ValueError(f"APP_ENV={self.app_env} requires REDIS_URL")
        return self

    @model_validator(mode="after")
    def _check_openai(self) -> Settings:
        if self.openai_api_type == "azure":
            if not self.openai_api_version:
                raise ValueError("OPENAI_API_TYPE=azure requires OPENAI_API_VERSION")
            if "api.openai.com" in self.openai_base_url:
                raise ValueError(
                    "OPENAI_API_TYPE=azure requires OPENAI_BASE_URL to be the Azure OpenAI "
                    "endpoint (https://NAME.openai.azure.com)"
                )
        return self

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return http_url(value)

    @field_validator("prune_cron", "backup_cron", "restore_drill_cron", "embed_stale_cron")
    @classmethod
    def _five_cron_fields(cls, value: str, info: ValidationInfo) -> str:
        if value == CRON_OFF and info.field_name == "embed_stale_cron":
            return value
        fields = value.split()
        if len(fields) != 5 or not all(re.fullmatch(r"[0-9A-Za-z*/,\-]+", f) for f in fields):
            raise ValueError(
                "expected a cron expression of 5 fields (minute hour day month weekday), "
                f"e.g. '0 3 * * *'; got {value!r}"
            )
        return value

    @property
    def echo_provider_enabled(self) -> bool:
        """The deterministic offline provider: for demos and tests, never a production default."""
        if self.allow_echo_provider is not None:
            return self.allow_echo_provider
        return self.app_env == "local"

    def api_keys(self) -> list[str]:
        """The accepted API keys (``AUTOFORGE_API_KEYS``, comma-separated)."""
        raw = self.autoforge_api_keys.get_secret_value() if self.autoforge_api_keys else ""
        return [key.strip() for key in raw.split(",") if key.strip()]

    def replica(self, name: str) -> ReplicaConfig | None:
        """The replica called ``name`` in ``REPLICAS``."""
        return next((replica for replica in self.replicas if replica.name == name), None)

    def local_replicas(self) -> list[ReplicaConfig]:
        """The replicas whose file is on this machine (``REPLICA_HOST``)."""
        return [r for r in self.replicas if r.host_or(self.replica_host) == self.replica_host]

    def redis_display(self) -> str:
        """The Redis URL without its password, safe to print."""
        if self.redis_url is None:
            return f"embedded (port {self.embedded_redis_port})"
        parts = urlsplit(self.redis_url.get_secret_value())
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        if parts.password:
            netloc = f"{parts.username or ''}:***@{netloc}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    @cached_property
    def database(self) -> DatabaseTarget:
        """The database this process talks to."""
        base = Path.cwd()
        plaintext = frozenset(
            host.strip() for host in self.database_plaintext_hosts.split(",") if host.strip()
        )
        if self.app_env == "local":
            if self.database_url is None:
                return DatabaseTarget(
                    kind="local", path=(base / self.data_dir / "autoforge.db").resolve()
                )
            return parse_database_url(
                self.database_url, variable="DATABASE_URL", base_dir=base, plaintext_hosts=plaintext
            )

        url_var, token_var = _REMOTE_VARIABLES[self.app_env]
        url = getattr(self, url_var.lower())
        token: SecretStr | None = getattr(self, token_var.lower())
        missing = [
            name
            for name, value in ((url_var, url), (token_var, token and token.get_secret_value()))
            if not value
        ]
        if missing:
            raise ValueError(
                f"APP_ENV={self.app_env} requires {' and '.join(missing)}; refusing to fall back "
                "to a local file"
            )
        target = parse_database_url(url, variable=url_var, base_dir=base, plaintext_hosts=plaintext)
        if target.is_local:
            raise ValueError(
                f"{url_var} names a local file but APP_ENV={self.app_env} needs a libSQL server "
                "(libsql://, https://)"
            )
        # The dedicated token variable wins over any token embedded in the URL.
        return DatabaseTarget(kind="remote", url=target.url, auth_token=token)

    def secrets(self) -> list[str]:
        """Every secret value configured, so log output can be scrubbed of them."""
        values: list[str] = []
        for item in (
            self.backup_encryption_key,
            self.backup_s3_secret_access_key,
            self.openai_api_key,
            self.turso_auth_token,
            self.turso_staging_auth_token,
            self.autoforge_api_key,
            self.flower_basic_auth,
        ):
            if item is not None and item.get_secret_value():
                values.append(item.get_secret_value())
        values.extend(self.api_keys())
        for replica in self.replicas:
            if replica.auth_token is not None and replica.auth_token.get_secret_value():
                values.append(replica.auth_token.get_secret_value())
            password = _url_password(replica.sync_url)
            if password:
                values.extend({password, unquote(password)})
        if self.redis_url is not None:
            password = urlsplit(self.redis_url.get_secret_value()).password
            if password:
                # As written in the URL, and as sent to the server (percent-decoded).
                values.extend({password, unquote(password)})
        # Plain URL settings may still carry user:password@ (e.g. behind a proxy).
        for url in (self.openai_base_url, self.backup_s3_endpoint_url, self.api_url):
            password = _url_password(url)
            if password:
                values.extend({password, unquote(password)})
        token = self.database.auth_token
        if token is not None and token.get_secret_value():
            values.append(token.get_secret_value())
        return sorted(set(values), key=len, reverse=True)


def http_url(value: str) -> str:
    """``value`` if it is an ``http://`` or ``https://`` URL with a host; ``ValueError`` if not.

    The message does not quote the value: it may carry a password.
    """
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return value


def _url_password(url: str | None) -> str | None:
    try:
        return urlsplit(url).password if url else None
    except ValueError:  # not a URL at all: nothing to hide in it
        return None


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once, turning validation failures into one clear error.

    Each problem names its environment variable; input values are never echoed, since
    they may be secrets.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            variable = "_".join(str(part) for part in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{variable}: {message}" if variable else message)
        raise ConfigurationError("invalid settings:\n  " + "\n  ".join(lines)) from None
    except SettingsError as exc:
        # A JSON-valued variable that is not JSON; the message names the field, not the value.
        match = re.search(r'field "(\w+)"', str(exc))
        variable = match.group(1).upper() if match else "a JSON-valued variable"
        raise ConfigurationError(f"invalid settings:\n  {variable}: not valid JSON") from None
