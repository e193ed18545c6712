"""Benchmark harnesses (installed as `agentdag.benchmarks`); results are printed, never stored here."""
