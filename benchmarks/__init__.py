"""Benchmarks of the sweep engine against what users would write instead.

`make bench` (or `python -m benchmarks [--quick] [--only WORKLOAD ...]`) runs every
(workload, method) of `benchmarks.workloads.MEASUREMENTS` in a fresh process and writes
`benchmarks/RESULTS.md` (report) and `benchmarks/RESULTS.json` (raw records). Modules:
`workloads` (what is measured), `baselines` (naive loop, one-jit loop, solve_ivp, lax.scan
reference), `_measure` (compile events, timing, peak memory), `report` (Markdown).
"""
