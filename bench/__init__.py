"""Benchmarks of the box on this machine: ``python -m bench`` (issue 7).

Every figure is measured beside the obvious alternative and against its target; the
table goes to stdout and everything to ``bench/results.json``. Each measurement runs in
a fresh worker process (``bench.workers``), so one never disturbs another's CPU figures.
"""
