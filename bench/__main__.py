"""``python -m bench``: run the benchmarks, print the table, write bench/results/DATE.json."""

import sys

from bench.cli import main

sys.exit(main())
