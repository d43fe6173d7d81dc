"""Job kinds are declared once, in their own folder, and found by discovery (no services)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from core.errors import ConfigurationError
from jobs.errors import UnknownKind
from jobs.kind import KindSpec, Ref, Schedule
from jobs.registry import KindRegistry, discover
from tasks.registry import kind_registry
from tests.conftest import make_settings

TASKS = Path(__file__).resolve().parents[2] / "tasks"


class _Nothing(BaseModel):
    pass


def _kind(name: str, **fields: object) -> KindSpec:
    values: dict[str, object] = {
        "name": name,
        "queue": "q",
        "task_name": f"autoforge.{name}",
        "arguments": _Nothing,
        "example": {},
        "summary": name,
        "description": name,
        "logic": Ref("tasks.canary.logic:run_canary"),
        "max_attempts": 2,
        "time_limit_s": 60,
    }
    values.update(fields)
    return KindSpec(**values)  # type: ignore[arg-type]


def test_every_folder_with_a_declaration_is_a_kind_and_no_other() -> None:
    folders = sorted(p.parent.name for p in TASKS.glob("*/kind.py"))
    declarations = [importlib.import_module(f"tasks.{folder}.kind").KIND for folder in folders]

    registry = kind_registry()

    assert sorted(kind.name for kind in declarations) == list(registry.names)
    assert all(registry[kind.name] is kind for kind in declarations)
    assert "canary" in registry  # the worked example
    assert "maintenance" not in folders  # housekeeping, not a kind


# Every declared kind, found as the application finds them: a new folder is checked too.
@pytest.mark.parametrize("name", kind_registry().names)
def test_each_declaration_names_working_code(name: str) -> None:
    kind = kind_registry()[name]

    kind.arguments.model_validate(kind.example)
    hooks: list[Ref[Any] | None] = [kind.logic, kind.on_failure, kind.admission]
    hooks += [kind.domain_rows, kind.on_cancel, kind.progress_detail, kind.metrics]
    hooks += [kind.on_worker_start, kind.route, kind.host_queues, kind.periodic]
    hooks += [kind.readiness.check if kind.readiness is not None else None]
    for hook in hooks:
        if hook is not None:
            assert hook.load() is not None, hook.path
    settings = make_settings(Path("x.db"))
    for schedule in kind.schedules:
        assert schedule.cron(settings).count(" ") == 4  # local: every schedule is on
        kind.arguments.model_validate(schedule.arguments)


@pytest.fixture
def kinds_package(tmp_path: Path) -> Iterator[str]:
    """A package of kinds on the import path: ``alpha`` declares one, ``shared`` none."""
    root = tmp_path / "more_kinds"
    for folder in ("alpha", "shared"):
        (root / folder).mkdir(parents=True)
        (root / folder / "__init__.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "alpha" / "kind.py").write_text(
        textwrap.dedent(
            """
            from pydantic import BaseModel

            from jobs.kind import KindSpec, Ref


            class AlphaArguments(BaseModel):
                size: int = 1


            KIND = KindSpec(
                name="alpha",
                queue="alphas",
                task_name="autoforge.alpha",
                arguments=AlphaArguments,
                example={"size": 2},
                summary="Enqueue an alpha",
                description="An alpha job.",
                logic=Ref("more_kinds.alpha.logic:run_alpha"),
                max_attempts=4,
                time_limit_s=30,
            )
            """
        )
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield "more_kinds"
    finally:
        sys.path.remove(str(tmp_path))
        for module in [m for m in sys.modules if m.split(".")[0] == "more_kinds"]:
            del sys.modules[module]


def test_a_new_folder_with_a_declaration_is_discovered(kinds_package: str) -> None:
    registry = discover(importlib.import_module(kinds_package))

    assert registry.names == ("alpha",)
    alpha = registry["alpha"]
    assert (alpha.queue, alpha.task_name) == ("alphas", "autoforge.alpha")
    assert registry.queues == ("alphas", "maintenance")
    assert registry.task_names == {"autoforge.alpha"}
    # Its logic is not imported until it is used (there is none: it would fail).
    assert "more_kinds.alpha.logic" not in sys.modules


def test_an_undeclared_kind_is_refused_by_name() -> None:
    with pytest.raises(UnknownKind, match="no job kind 'teleport' is declared; kinds: backup"):
        kind_registry()["teleport"]


@pytest.mark.parametrize(
    ("kinds", "problem"),
    [
        ([_kind("a"), _kind("a", task_name="autoforge.other")], "declared twice"),
        ([_kind("a"), _kind("b", task_name="autoforge.a")], "task name 'autoforge.a' is taken"),
        (
            [_kind("a", task_name="autoforge.maintenance.sweep_outbox")],
            "task name 'autoforge.maintenance.sweep_outbox' is taken",
        ),
        (
            [_kind("a", schedules=(Schedule("s", "s", {}, "no_such_cron", "%Y"),))],
            "names no setting 'no_such_cron'",
        ),
    ],
)
def test_conflicting_declarations_are_refused(kinds: list[KindSpec], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        KindRegistry(kinds)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"name": "Big Kind"}, "lower-case letters"),
        ({"max_attempts": 0}, "must be >= 1"),
        ({"time_limit_s": 0}, "must be >= 1"),
        ({"logic": "tasks.canary.logic.run_canary"}, "package.module:attribute"),
    ],
)
def test_a_malformed_declaration_is_refused(fields: dict[str, object], problem: str) -> None:
    if isinstance(fields.get("logic"), str):
        with pytest.raises(ValueError, match=problem):
            Ref(str(fields["logic"]))
        return
    with pytest.raises(ValueError, match=problem):
        _kind(str(fields.pop("name", "a")), **fields)


def test_limits_are_the_declared_ones_unless_the_settings_override_them(tmp_path: Path) -> None:
    registry = kind_registry()
    settings = make_settings(
        tmp_path / "x.db", job_time_limits_s={"canary": 30}, job_max_attempts={"backup": 7}
    )

    assert registry.time_limit_s(settings, "canary") == 30
    assert registry.time_limit_s(settings, "backup") == registry["backup"].time_limit_s == 3600
    assert registry.max_attempts(settings, "backup") == 7
    assert registry.max_attempts(settings, "canary") == registry["canary"].max_attempts == 11
    effective = registry.effective(settings)
    assert effective["job_time_limits_s"] == {
        "backup": 3600,
        "canary": 30,
        "embedding": 1800,
        "evaluation": 1800,
        "replica-sync": 600,
    }
    assert effective["job_max_attempts"] == {
        "backup": 7,
        "canary": 11,
        "embedding": 5,
        "evaluation": 5,
        "replica-sync": 4,
    }


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (
            {"job_time_limits_s": {"canary": 30, "nightly": 5}},
            "JOB_TIME_LIMITS_S names unknown job kinds ['nightly']; "
            "known: ['backup', 'canary', 'embedding', 'evaluation', 'replica-sync']",
        ),
        (
            {"job_max_attempts": {"teleport": 2}},
            "JOB_MAX_ATTEMPTS names unknown job kinds ['teleport']",
        ),
        (
            {"celery_visibility_timeout_s": 600},
            "CELERY_VISIBILITY_TIMEOUT_S (600) must exceed the longest job time limit and "
            "retry delay (3600 s)",
        ),
        (
            {"celery_visibility_timeout_s": 100, "job_time_limits_s": {"backup": 90}},
            "CELERY_VISIBILITY_TIMEOUT_S (100) must exceed the longest job time limit and "
            "retry delay (1800 s)",
        ),
    ],
)
def test_settings_that_do_not_fit_the_kinds_are_refused(
    tmp_path: Path, overrides: dict[str, object], problem: str
) -> None:
    settings = make_settings(tmp_path / "x.db", **overrides)

    with pytest.raises(ConfigurationError) as caught:
        kind_registry().check_settings(settings)
    assert str(caught.value).startswith("invalid settings:\n  ")
    assert problem in str(caught.value)


def test_the_schedule_of_a_fire_is_found_by_its_kind_and_arguments() -> None:
    registry = kind_registry()

    nightly = registry.schedule_of("backup", {"mode": "backup", "prune": True})
    drill = registry.schedule_of("backup", {"prune": True, "mode": "drill"})

    assert nightly is not None
    assert (nightly.name, nightly.key) == ("nightly-backup", "backup")
    assert drill is not None
    assert (drill.name, drill.key) == ("restore-drill", "drill")
    assert registry.schedule_of("backup", {"mode": "backup"}) is None
    assert registry.schedule_of("teleport", {}) is None


def test_a_kinds_own_tables_join_the_metadata_when_its_models_are_loaded() -> None:
    # A fresh process: in this one, another test may have imported the canary's models.
    script = (
        "from db.models import Base\n"
        "from tasks.registry import kind_registry\n"
        "before = 'canary_effects' in Base.metadata.tables\n"
        "kind_registry().load_models()\n"
        "print(before, 'canary_effects' in Base.metadata.tables)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["False", "True"]
