"""Benchmarks: each module with a `main() -> None` is run by `python -m bench` (make bench)."""
