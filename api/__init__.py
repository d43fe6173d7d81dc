"""The thin HTTP enqueue API (FastAPI). Built by the job-pipeline issue."""
