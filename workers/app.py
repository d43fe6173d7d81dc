"""The Celery app factory: everything configured from the settings and the declared job
kinds, tasks wired explicitly."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from celery import Celery, signals

from core.settings import Settings
from db.database import Database
from jobs.leases import LeaseRenewal
from jobs.publisher import JobPublisher
from jobs.queues import MAINTENANCE_QUEUE, PRIORITY_SEPARATOR, PRIORITY_STEPS
from jobs.registry import KindRegistry
from jobs.runtime import Runtime
from tasks.maintenance import tasks as maintenance_tasks
from tasks.registry import kind_registry
from workers import broker_transport
from workers.beat import beat_schedule
from workers.registration import register_kinds
from workers.routing import task_queues, task_routes

log = logging.getLogger("autoforge.worker")


def broker_url(settings: Settings) -> str:
    """REDIS_URL, or the embedded server that ``autoforge up`` starts in ``local``."""
    if settings.redis_url is not None:
        return settings.redis_url.get_secret_value()
    return f"redis://127.0.0.1:{settings.embedded_redis_port}/0"


def split_credentials(url: str) -> tuple[str, dict[str, str]]:
    """A Redis URL without its credentials, and the credentials as client options.

    For RedBeat: workers report their settings (``inspect conf``, Flower's Config tab)
    through Celery's ``filter_hidden_settings``, which masks ``broker_url``, keys naming a
    password and such keys inside nested options, but shows any other URL as it is.
    """
    parts = urlsplit(url)
    credentials: dict[str, str] = {}
    if parts.username:
        credentials["username"] = unquote(parts.username)
    if parts.password:
        credentials["password"] = unquote(parts.password)
    query = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name == "password":  # redis-py also reads it from the query (unix sockets)
            credentials["password"] = value
        else:
            query.append((name, value))
    # Built by hand: urlunsplit would turn "unix:///path" into "unix:/path".
    bare = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
    if query:
        bare += f"?{urlencode(query)}"
    return bare, credentials


def create_celery(settings: Settings, kinds: KindRegistry | None = None) -> Celery:
    """A Celery app for ``settings`` and the declared job kinds (``kinds``, by default
    every ``tasks/<kind>/kind.py``). Connects to nothing until it is used.

    Raises:
        ConfigurationError: the settings do not fit the kinds (see
            :meth:`~jobs.registry.KindRegistry.check_settings`).
    """
    kinds = kind_registry() if kinds is None else kinds
    kinds.check_settings(settings)
    url = broker_url(settings)
    redbeat_url, credentials = split_credentials(url)
    # A worker must outlive the loss of Redis (see workers/broker_transport.py).
    broker_transport.use_for_redis_urls()
    app = Celery("autoforge", broker=url, backend=url, set_as_current=False)
    transport = {
        # Longer than any job may run or wait, else Redis would hand a running job to a
        # second worker (checked by the settings).
        "visibility_timeout": settings.celery_visibility_timeout_s,
        # Rescan for messages of dead workers often (default is ~100 s between scans).
        "unacked_restore_interval": settings.celery_unacked_restore_interval_s,
        "unacked_restore_throttle": 1,
        # The rescan's mutex: a worker killed while holding it would block every other
        # worker's rescans for kombu's default 300 s.
        "unacked_mutex_expire": 15,
        "socket_connect_timeout": 5,
        # Pinned to kombu's defaults: the priority lists' names depend on them.
        "priority_steps": list(PRIORITY_STEPS),
        "sep": PRIORITY_SEPARATOR,
    }
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=settings.worker_concurrency,
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        # Reconnect for as long as Redis is away (Celery's default gives up after 100
        # attempts, and the worker exits); the ledger keeps every job meanwhile.
        broker_connection_max_retries=None,
        # ... and, once it is back, within a few seconds (workers/consumer.py).
        worker_consumer="workers.consumer:PromptConsumer",
        # A job running when Redis goes away finishes and writes its result to the
        # ledger; Celery 6 would cancel it instead (its message cannot be acknowledged).
        worker_cancel_long_running_tasks_on_connection_loss=False,
        broker_connection_timeout=5,
        result_expires=24 * 3600,
        task_routes=task_routes(kinds),
        # A worker started without -Q consumes every queue.
        task_queues=task_queues(kinds, settings),
        task_default_queue=MAINTENANCE_QUEUE,
        task_create_missing_queues=True,
        task_track_started=True,
        task_send_sent_event=True,
        worker_send_task_events=True,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings, kinds),
        # RedBeat that rides out Redis outages (workers/beat_scheduler.py); it retries by
        # itself, so no ``retry_period`` (that would stall a tick for up to a minute).
        beat_scheduler="workers.beat_scheduler:OutageTolerantScheduler",
        # Credentials as options (masked where workers report settings), not in the URL;
        # redis-py uses them as the URL has none.
        redbeat_redis_url=redbeat_url,
        redbeat_redis_options={"socket_connect_timeout": 5, "socket_timeout": 10, **credentials},
        redbeat_key_prefix="autoforge:redbeat:",
        redbeat_lock_timeout=max(15, int(settings.sweeper_interval_s * 3)),
        beat_max_loop_interval=5,
    )
    runtime = Runtime(
        settings=settings,
        kinds=kinds,
        db=Database(settings),
        publisher=JobPublisher(app, kinds, settings),
        leases=LeaseRenewal(settings, kinds.task_names),
        broker_url=url,
    )
    app.autoforge_runtime = runtime
    register_kinds(app, kinds, settings)
    maintenance_tasks.register(app, settings)
    _connect_process_hooks(app, runtime)
    return app


def _connect_process_hooks(app: Celery, runtime: Runtime) -> None:
    """Engines are per worker process: built after fork, disposed at exit. Lease renewal
    starts in the worker's main process before the pool forks."""

    @signals.worker_init.connect(weak=False)
    def _start(sender: Any, **kwargs: Any) -> None:
        if sender.app is app:
            runtime.leases.start(sender.hostname)

    @signals.worker_process_init.connect(weak=False)
    def _open(**kwargs: Any) -> None:
        runtime.leases.forget()
        runtime.db.engine  # noqa: B018 - build the engine in the new process

    @signals.worker_process_shutdown.connect(weak=False)
    def _close(**kwargs: Any) -> None:
        runtime.db.dispose()

    @signals.worker_shutdown.connect(weak=False)
    def _close_main(**kwargs: Any) -> None:
        runtime.leases.stop()
        runtime.db.dispose()

    # The kinds whose jobs share the housekeeping queue (the backups).
    housekeeping_kinds = [kind.name for kind in runtime.kinds if kind.queue == MAINTENANCE_QUEUE]

    @signals.worker_ready.connect(weak=False)
    def _check_queues(sender: Any, **kwargs: Any) -> None:
        consumed = sender.app.amqp.queues.consume_from
        if MAINTENANCE_QUEUE not in consumed:
            log.warning(
                "this worker does not consume the %r queue (%s): it holds the outbox "
                "sweeper, which publishes jobs accepted while Redis was unreachable%s. "
                "Unless another worker consumes it, start one with -Q %s, or without -Q "
                "(every queue)",
                MAINTENANCE_QUEUE,
                ", ".join(sorted(consumed)),
                "".join(f", and the {name} jobs" for name in housekeeping_kinds),
                MAINTENANCE_QUEUE,
            )


__all__ = ["broker_url", "create_celery", "split_credentials"]
