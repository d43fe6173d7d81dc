"""The thin HTTP enqueue API (FastAPI): jobs, prompts, evaluations, backups, health, metrics."""
