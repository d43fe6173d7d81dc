"""The workloads of ``python3 -m bench pipeline``, one module each."""
