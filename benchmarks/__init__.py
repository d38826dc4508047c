"""Benchmarks of the sweep engine against what users would write instead (`make bench`)."""
