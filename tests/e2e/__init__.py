"""End-to-end tests: real worker and beat processes, real Redis, real libSQL."""
