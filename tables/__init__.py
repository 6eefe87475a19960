"""Benchmark tables shipped with wrn-search (``wrn-search simulate SPACE --table NAME``); see docs/simulation.md."""
