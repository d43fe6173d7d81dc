"""Checks and parsers of what people type: each refuses bad input with ``typer.BadParameter``.

They are Typer ``callback``/``parser`` functions, so Click attaches the argument's name
and the command fails with one line naming it (exit 2) before anything is sent: never a
traceback from deep inside the HTTP client or the JSON encoder.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

import typer

from core.settings import http_url

#: Deeper JSON than this is refused: Python's JSON encoder and decoder recurse, and a job
#: body nested this deep is a mistake, not a job.
MAX_BODY_DEPTH = 100
#: HTTP header values the API accepts (its ``Idempotency-Key`` limit).
MAX_HEADER_CHARS = 255


def _refuse(message: str) -> NoReturn:
    raise typer.BadParameter(message)


def _check_utf8(value: str, what: str = "it") -> None:
    # Bytes that are not UTF-8 on the command line arrive as lone surrogates, which no
    # HTTP request can carry.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        _refuse(f"{what} is not valid UTF-8 text")


def text(value: str | None) -> str | None:
    """A free-text argument (an id, a kind, a cursor): not empty, valid UTF-8."""
    if value is None:
        return None
    if not value.strip():
        _refuse("must not be empty")
    _check_utf8(value)
    return value


def idempotency_key(value: str | None) -> str | None:
    """``--idempotency-key``: 1 to 255 printable ASCII characters, as HTTP headers carry."""
    if value is None:
        return None
    if not value:
        _refuse("must not be empty (leave the option out for no key)")
    _check_header(value, show=True)
    return value


def api_key(value: str | None) -> str | None:
    """``--key``: an API key as HTTP headers carry it; the key is never quoted back."""
    if value is None:
        return None
    if not value.strip():
        _refuse("must not be empty")
    _check_header(value, show=False)
    return value


def _check_header(value: str, *, show: bool) -> None:
    if len(value) > MAX_HEADER_CHARS:
        _refuse(f"is {len(value)} characters long; at most {MAX_HEADER_CHARS}")
    for position, char in enumerate(value, 1):
        if not " " <= char <= "~":
            which = f"{char!r} " if show and char.isprintable() else ""
            _refuse(
                f"character {position} {which}is not printable ASCII (HTTP headers carry "
                "only ASCII)"
            )
    if value != value.strip():
        _refuse("must not start or end with a space")


def api_url(value: str | None) -> str | None:
    """``--api-url``: an ``http://`` or ``https://`` URL with a host."""
    if value is None:
        return None
    try:
        return http_url(value)
    except ValueError as exc:
        _refuse(str(exc))


def json_body(value: str) -> dict[str, Any]:
    """``--body``: a JSON object, inline or ``@path`` to a UTF-8 file holding one."""
    source, text_value = "it", value
    if value.startswith("@"):
        path = Path(value[1:])
        source = f"file {path}"
        _check_utf8(value[1:], "the file name")
        try:
            raw = path.read_bytes()
        except OSError as exc:
            _refuse(f"cannot read {path}: {exc.strerror or exc}")
        try:
            text_value = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            _refuse(f"{source} is not UTF-8 text (byte {exc.start + 1} is 0x{raw[exc.start]:02x})")
    else:
        _check_utf8(value)
    try:
        body = json.loads(
            text_value, parse_constant=_no_constant, parse_float=_float, parse_int=_int
        )
    except json.JSONDecodeError as exc:
        _refuse(f"{source} is not valid JSON: {exc}")
    except _NotJson as exc:
        _refuse(f"{source} {exc}")
    except RecursionError:
        _refuse(f"{source} is nested deeper than {MAX_BODY_DEPTH} levels")
    if not isinstance(body, dict):
        _refuse(f"{source} must be a JSON object")
    if _depth(body) > MAX_BODY_DEPTH:
        _refuse(f"{source} is nested deeper than {MAX_BODY_DEPTH} levels")
    return body


class _NotJson(ValueError):
    """A number Python accepts but JSON (or the API) cannot carry."""


def _no_constant(name: str) -> NoReturn:
    raise _NotJson(f"holds {name}, which is not JSON (JSON has no NaN or Infinity)")


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NotJson(f"holds the number {literal[:20]}, too large for a JSON number")
    return value


def _int(literal: str) -> int:
    digits = len(literal.lstrip("-"))
    limit = sys.get_int_max_str_digits()
    if limit and digits > limit:
        raise _NotJson(f"holds a number of {digits} digits; at most {limit}")
    return int(literal)


def _depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_BODY_DEPTH:
            stack.extend((child, depth + 1) for child in children)
    return deepest
