"""Benchmark cases for `nmroute bench` (see README.md here)."""
