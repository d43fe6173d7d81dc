"""The baselines the pipeline benchmark measures this project against.

Each module is a minimal application of another tool doing the same work as the
product's no-op canary job, configured like the product where the tool allows (acks
late, prefetch 1). They take their settings from the environment variables the
benchmark sets when it starts them (``BENCH_*``).
"""
