"""Celery process wiring: app factory, queues, beat schedule and scheduler, process hooks."""
