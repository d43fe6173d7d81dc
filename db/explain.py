"""``EXPLAIN QUERY PLAN`` as a tree, the way the sqlite3 shell prints it (seed section 3.2)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidData
from db.database import Database


@dataclass(frozen=True, slots=True)
class PlanStep:
    id: int
    parent: int
    detail: str


def explain(db: Database, sql: str, parameters: Sequence[Any] = ()) -> list[PlanStep]:
    """The query plan of one SQL statement, planned with ``parameters`` bound to its
    ``?`` placeholders (as the application runs it). The statement itself is not run."""
    statement = sql.strip().rstrip(";").strip()
    if not statement:
        raise InvalidData("SQL: empty statement")
    if ";" in statement:
        raise InvalidData("SQL: give exactly one statement (found ';' inside)")
    with db.read_session() as session:
        rows = (
            session.connection()
            .exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", tuple(parameters))
            .all()
        )
    return [PlanStep(id=int(r[0]), parent=int(r[1]), detail=str(r[3])) for r in rows]


def render_plan(steps: list[PlanStep]) -> str:
    """The plan as an indented tree, like the sqlite3 shell's ``.eqp on``."""
    children: dict[int, list[PlanStep]] = {}
    for step in steps:
        children.setdefault(step.parent, []).append(step)
    lines = ["QUERY PLAN"]

    def walk(parent: int, prefix: str) -> None:
        kids = children.get(parent, [])
        for index, step in enumerate(kids):
            last = index == len(kids) - 1
            lines.append(f"{prefix}{'`--' if last else '|--'}{step.detail}")
            walk(step.id, prefix + ("   " if last else "|  "))

    walk(0, "")
    return "\n".join(lines)
