"""Benchmarks: each prints ratios against a baseline measured in the same run.

``python3 -m bench pipeline`` (this package's ``__main__``) runs the job pipeline's;
bench/README.md says how to read them. They are not tests: CI does not run them.
"""
