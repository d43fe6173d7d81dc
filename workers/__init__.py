"""Celery process wiring: the app factory and entry point, task registration, queues and
routes derived from the job kinds, the beat schedule and scheduler, the consumer and the
broker transport. The job engine itself is :mod:`jobs`; the kinds are :mod:`tasks`."""
