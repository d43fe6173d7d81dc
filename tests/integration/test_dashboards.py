"""The Grafana dashboard and the Prometheus alert rules name only metrics the API exports.

The exported names come from real scrapes of ``/metrics`` and ``/metrics/ledger`` of an
app on a migrated libSQL file and the session's real Redis, after jobs went through
every state: no list of names is written down here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from core.settings import Settings
from db.repositories.jobs import JobRepository
from db.transaction import write_transaction
from domain.jobs import JobError
from tests.support.api import TestClient, ledger
from tests.support.promql import metric_names

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "autoforge.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# The sample names each type of family exposes (prometheus_client's text format).
_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "untyped": ("",),
}


@pytest.fixture
def exported(app_settings: Settings, client: TestClient) -> set[str]:
    """Every sample name the API exports, from real scrapes after some real traffic."""
    ids = [client.post("/v1/jobs/canary", json={}).json()["id"] for _ in range(3)]
    client.get(f"/v1/jobs/{ids[0]}")
    _run_through_every_state(app_settings, ids)
    texts = [client.get(path).text for path in ("/metrics", "/metrics/ledger")]
    names: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            names.update(family.name + suffix for suffix in _SUFFIXES[family.type])
            names.update(sample.name for sample in family.samples)
    return names


def _run_through_every_state(settings: Settings, ids: list[str]) -> None:
    succeeded, failed, lapsed = ids

    def unit(session: Session) -> None:
        jobs = JobRepository(session)
        assert jobs.claim(succeeded, lease_s=30) is not None
        assert jobs.schedule_retry(
            succeeded,
            attempt=1,
            error=JobError("Busy", "locked"),
            delay_s=0,
        )
        assert jobs.claim(succeeded, lease_s=30) is not None
        assert jobs.succeed(succeeded, attempt=2, result={})
        assert jobs.claim(failed, lease_s=30) is not None
        assert jobs.fail(failed, JobError("Boom", "no"), attempt=1)
        assert jobs.claim(lapsed, lease_s=0) is not None
        assert jobs.claim(lapsed, lease_s=30) is not None

    with ledger(settings) as db:
        write_transaction(db, unit)


def _expressions(node: Any) -> Iterator[str]:
    """Every ``expr`` in a dashboard (panels, nested rows) and the variables' queries."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "definition") and isinstance(value, str):
                yield value
            else:
                yield from _expressions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _expressions(item)


def _dashboard_expressions() -> list[str]:
    return list(_expressions(json.loads(DASHBOARD.read_text())))


def _alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_dashboard_query_names_exported_metrics(exported: set[str]) -> None:
    expressions = _dashboard_expressions()
    assert len(expressions) >= 20
    for expression in expressions:
        names = metric_names(expression)
        assert names, f"no metric found in {expression!r}"
        assert names <= exported, f"{sorted(names - exported)} not exported; in {expression!r}"


def test_every_alert_names_exported_metrics(exported: set[str]) -> None:
    rules = _alert_rules()
    assert len(rules) >= 10
    for rule in rules:
        assert rule["alert"].startswith("Autoforge")
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
        names = metric_names(rule["expr"])
        assert names, f"no metric found in {rule['alert']}"
        assert names <= exported, f"{rule['alert']}: {sorted(names - exported)} not exported"


@pytest.mark.parametrize(
    "subject",
    [
        "autoforge_jobs",  # jobs by state and kind
        "autoforge_queue_depth",
        "autoforge_job_start_delay_seconds_bucket",  # enqueue-to-start latency
        'status="failed"',
        "autoforge_job_retries_total",
        "autoforge_job_lease_lapses_total",
        "autoforge_outbox_backlog",
        'autoforge_backup_last_success_timestamp_seconds{mode="backup"}',
        'autoforge_backup_last_success_timestamp_seconds{mode="drill"}',
        "autoforge_http_requests_total",
        "autoforge_replica_lag_seconds",
    ],
)
def test_the_dashboard_and_the_alerts_cover(subject: str) -> None:
    assert any(subject in expression for expression in _dashboard_expressions())
    assert any(subject in rule["expr"] for rule in _alert_rules()) or subject in (
        "autoforge_jobs",
        "autoforge_http_requests_total",
    )


def test_the_dashboard_is_importable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] == "autoforge-jobs"
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] != "row":
            assert panel["targets"], panel["title"]
            assert all(target["refId"] for target in panel["targets"])
    variables = {item["name"] for item in dashboard["templating"]["list"]}
    assert variables == {"datasource", "kind"}


def test_panels_do_not_overlap_and_each_sits_under_its_row() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
    rows = sorted(
        (panel["gridPos"]["y"], panel["title"]) for panel in panels if panel["type"] == "row"
    )
    under: dict[str, list[str]] = {}
    for panel in panels:
        if panel["type"] != "row":
            row = max((r for r in rows if r[0] < panel["gridPos"]["y"]), default=(0, ""))[1]
            under.setdefault(row, []).append(panel["title"])
    assert "" not in under, under.get("")
    assert set(under["Replicas"]) == {"Replica lag", "Replica syncs by outcome"}
    assert not [t for t in under["API"] if "Replica" in t]


def test_the_promql_reader_finds_names_and_skips_the_rest() -> None:
    expression = (
        'histogram_quantile(0.95, sum by (le, kind) (rate(a_bucket{kind=~"$kind"}'
        "[$__rate_interval]))) / on (kind) group_left sum(b_total offset 5m) > 2e3"
    )
    assert metric_names(expression) == {"a_bucket", "b_total"}
    assert metric_names("label_values(autoforge_jobs, kind)") == {"autoforge_jobs"}
