"""An HTTP load generator: ``concurrency`` clients in flight for a while, each request timed.

It runs on an asyncio loop in this process, each client one keep-alive connection, so
it costs the server's machine some CPU, the same for every server it is pointed at.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx


@dataclass
class LoadRun:
    """What one run of the load saw: request latencies (ms), errors, wall time."""

    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        """Successful requests per second."""
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0


def run_load(
    url: str,
    *,
    body: Any,
    headers: Mapping[str, str],
    concurrency: int,
    seconds: float,
) -> LoadRun:
    """POST ``body`` as JSON to ``url`` from ``concurrency`` clients for ``seconds``."""
    return asyncio.run(_load(url, body, dict(headers), concurrency, seconds))


def _request(url: str, body: Any, headers: dict[str, str]) -> tuple[str, int, bytes]:
    """Host, port and the bytes of one keep-alive POST."""
    parts = urlsplit(url)
    payload = json.dumps(body).encode()
    lines = [
        f"POST {parts.path or '/'}{'?' + parts.query if parts.query else ''} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return parts.hostname or "127.0.0.1", parts.port or 80, head + payload


async def _load(
    url: str, body: Any, headers: dict[str, str], concurrency: int, seconds: float
) -> LoadRun:
    # A few lines of asyncio streams rather than httpx: httpx's async connection pool
    # tops out near 270 requests/s at 32 connections on a 2-core machine, below the
    # servers it is meant to measure; this client costs a fraction of that.
    run = LoadRun()
    host, port, request = _request(url, body, headers)
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < deadline:
                began = time.perf_counter()
                writer.write(request)
                status = await _response_status(reader)
                elapsed = (time.perf_counter() - began) * 1000
                if 200 <= status < 300:
                    run.latencies_ms.append(elapsed)
                else:
                    name = f"HTTP {status}"
                    run.errors[name] = run.errors.get(name, 0) + 1
        finally:
            writer.close()

    began = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    run.seconds = time.perf_counter() - began
    return run


async def _response_status(reader: asyncio.StreamReader) -> int:
    """Read one response (status line, headers, a Content-Length body); its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
        elif name.strip().lower() == "transfer-encoding":
            raise ValueError("chunked responses are not supported by this load generator")
    if length:
        await reader.readexactly(length)
    return status


def timed_gets(client: httpx.Client, url: str, *, count: int, budget_s: float) -> list[float]:
    """GET ``url`` one after another, ``count`` times or for ``budget_s``; latencies (ms).

    Any answer but 2xx stops the benchmark: a read that fails is not a fast read.
    """
    latencies: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(latencies) < count and (not latencies or time.perf_counter() < deadline):
        began = time.perf_counter()
        response = client.get(url)
        elapsed = (time.perf_counter() - began) * 1000
        response.raise_for_status()
        latencies.append(elapsed)
    return latencies
