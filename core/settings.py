"""The one typed settings object, built once at start-up and passed in.

Nothing else in the code base reads ``os.environ``. Values come from the environment and,
optionally, a ``.env`` file in the working directory (the environment wins).

Staging and production never fall back to a local file: a missing URL or token there is
a start-up error naming the variable (unlike the reviewed code, seed section 1.1).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.database_url import DatabaseTarget, parse_database_url
from core.errors import ConfigurationError

AppEnv = Literal["local", "staging", "production"]

# Which variables name the database (and its token) in each environment.
_REMOTE_VARIABLES: dict[str, tuple[str, str]] = {
    "staging": ("TURSO_STAGING_DATABASE_URL", "TURSO_STAGING_AUTH_TOKEN"),
    "production": ("TURSO_DATABASE_URL", "TURSO_AUTH_TOKEN"),
}


class Settings(BaseSettings):
    """All configuration of AutoForge Jobs, validated in one place."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        frozen=True,
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

    db_busy_timeout_ms: int = Field(5000, ge=0, le=600_000)
    db_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    db_slow_query_ms: float = Field(250.0, ge=0)
    db_echo: bool = False
    db_pool_size: int = Field(5, ge=1, le=100)
    db_max_overflow: int = Field(10, ge=0, le=100)
    db_pool_recycle_s: int = Field(3600, ge=1)
    db_connect_timeout_s: float = Field(10.0, gt=0)
    db_write_max_attempts: int = Field(8, ge=1, le=100)
    db_write_max_seconds: float = Field(30.0, gt=0)
    db_write_backoff_initial_s: float = Field(0.02, gt=0)
    db_write_backoff_max_s: float = Field(1.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="before")
    @classmethod
    def _upper_case_choices(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key in ("db_synchronous", "log_level"):
                if isinstance(data.get(key), str):
                    data[key] = data[key].upper()
            if isinstance(data.get("app_env"), str):
                data["app_env"] = data["app_env"].lower()
        return data

    @model_validator(mode="after")
    def _check_database(self) -> Settings:
        # Resolving the target validates the URL forms and the required variables.
        _ = self.database
        return self

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
        for item in (self.turso_auth_token, self.turso_staging_auth_token):
            if item is not None and item.get_secret_value():
                values.append(item.get_secret_value())
        token = self.database.auth_token
        if token is not None and token.get_secret_value():
            values.append(token.get_secret_value())
        return sorted(set(values), key=len, reverse=True)


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
