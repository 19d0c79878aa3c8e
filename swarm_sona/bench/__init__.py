"""Benchmark workloads and harnesses, run by ``swarm-sona bench NAME``."""
