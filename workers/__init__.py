"""Celery runtime: app factory, queues, beat schedule, process hooks. Built by the job-pipeline issue."""
