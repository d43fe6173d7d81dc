"""Pytest fixtures for a real Redis-compatible server (filled in by the pipeline work)."""
