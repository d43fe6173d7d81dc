"""The metric names a PromQL expression reads (test support; not a full PromQL parser).

Strings, label matchers, ranges, durations, Grafana variables, grouping label lists and
function names are removed; every identifier left is a metric name.
"""

from __future__ import annotations

import re

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\[\]]*\]")
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_TOKENS = re.compile(
    r"(?P<duration>\d+(?:\.\d+)?(?:ms|[smhdwy])\b)"
    r"|(?P<number>0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)(?P<call>\s*\()?"
)
_KEYWORDS = frozenset(
    {
        "and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
        "group_right", "bool", "offset", "inf", "nan", "atan2", "start", "end",
    }
)  # fmt: skip
_LABEL_VALUES = re.compile(r"^\s*label_values\((?P<expr>.*),\s*\w+\s*\)\s*$", re.DOTALL)


def metric_names(expression: str) -> set[str]:
    """Names of the metrics ``expression`` selects (Grafana's ``label_values`` too)."""
    match = _LABEL_VALUES.match(expression)
    if match:
        expression = match.group("expr")
    text = _STRINGS.sub('""', expression)
    text = _VARIABLES.sub("1m", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGES.sub(" ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for token in _TOKENS.finditer(text):
        name = token.group("name")
        if name is None or token.group("call") or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
