"""Benchmarks of wrn-search against the code users would otherwise write; see benchmarks/README.md."""
