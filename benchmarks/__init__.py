"""Benchmark suite: ``python -m benchmarks`` (see docs/benchmarks.md)."""
