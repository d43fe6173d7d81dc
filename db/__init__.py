"""The libSQL data layer: engine, models, repositories and write transactions."""
