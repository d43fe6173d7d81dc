"""Celery runtime: app factory, queues, beat schedule, process hooks (the pipeline issue)."""
