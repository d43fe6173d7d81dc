"""The thin HTTP enqueue API (FastAPI): app factory, auth, limits, one module per resource."""
