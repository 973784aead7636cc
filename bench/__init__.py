"""Benchmarks of the box on this machine: ``python -m bench`` (issue 7).

Every figure is measured beside the obvious alternative and against its target; the
table goes to stdout and everything to ``bench/results/DATE.json``. Each measurement runs in
a fresh worker process (``bench.workers``), so one never disturbs another's CPU figures.
Every benchmark runs ``--runs`` times (3), interleaved with the others (A B A B); a figure
is the median of its runs, with min and max beside it; the load average is recorded at the
start of each run (issue 13).
"""
