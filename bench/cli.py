"""``python -m bench [--quick] [--long] [--runs N] [--only NAME[,NAME]] [--side-by-side]
[--out FILE]``."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench import suite
from bench.report import Bench, machine, machine_line, merge_runs, summary, table, write_json

RESULTS = Path(__file__).resolve().parent / "results"  # bench/results/YYYY-MM-DD.json


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure the box on this machine beside the obvious alternatives; print "
        "a table and write every figure, its target and the machine to a JSON file.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="seconds in all: a 3 s hold, short idle, a few presses (CI smoke)")
    parser.add_argument("--long", action="store_true", help="add a 300 s hold")
    parser.add_argument("--only", metavar="NAME[,NAME]",
                        help=f"run only these: {', '.join(suite.NAMES)}")
    parser.add_argument("--side-by-side", action="store_true",
                        help="run the real-time measurements all at once: about a minute "
                        "quicker, but CPU figures read low (other processes keep the cores "
                        "awake)")
    parser.add_argument("--runs", type=int, default=None, metavar="N",
                        help="run every benchmark N times, interleaved (A B A B), and report "
                        "the median with min and max (default 3; --quick: 1)")
    parser.add_argument("--out", metavar="FILE", default=None,
                        help="where to write the JSON (default: bench/results/DATE.json)")
    return parser


def _names(only: str | None) -> list[str]:
    if not only:
        return list(suite.NAMES)
    names = [n.strip() for n in only.split(",") if n.strip()]
    unknown = [n for n in names if n not in suite.NAMES]
    if unknown:
        raise SystemExit(f"python -m bench: unknown benchmark {', '.join(unknown)}; "
                         f"choose from {', '.join(suite.NAMES)}")
    return [n for n in suite.NAMES if n in names]


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(names: list[str], plan: suite.Plan, scratch: Path) -> list[Bench]:
    """Every chosen benchmark, in order; a failure is recorded, never fatal."""
    env = suite.worker_env(scratch)
    benches = {n: Bench(n, suite.TITLES[n]) for n in names}

    realtime = [n for n in names if n in suite.NEEDS]
    if realtime:
        waves = suite.realtime_waves(plan, realtime)
        total = sum(max(spec[2] - 60 for spec in wave.values()) for wave in waves)
        _progress(f"real time: {len(waves)} wave(s), ~{total:.0f} s ...")
        t0 = time.monotonic()
        results = suite.run_waves(waves, scratch, env, _progress)
        took = time.monotonic() - t0
        compose = {"hold": suite.bench_hold, "light": suite.bench_light, "cpu": suite.bench_cpu}
        for name in realtime:
            bench = benches[name]
            bench.seconds = took
            try:
                compose[name](plan, results, bench)
            except Exception as exc:
                bench.status, bench.error = "error", f"{type(exc).__name__}: {exc}"
        if plan.side_by_side or plan.quick:
            for name in realtime:
                benches[name].notes.append(
                    "every real-time worker ran at once (--quick / --side-by-side): "
                    "CPU figures read low")

    from bench.holds import bench_relaxation
    from bench.web import bench_web

    others = {"overrun": suite.bench_overrun, "addons": suite.bench_addons,
              "quota": suite.bench_quota,
              "exit": suite.bench_exit,
              "button": suite.bench_button,
              "voice": suite.bench_voice, "startup": suite.bench_startup,
              "tui": suite.bench_tui, "history": suite.bench_history,
              "virtual": suite.bench_virtual, "web": bench_web, "fleet": suite.bench_fleet,
              "relaxation": bench_relaxation}
    for name in names:
        if name not in others:
            continue
        bench = benches[name]
        _progress(f"{name} ...")
        t0 = time.monotonic()
        try:
            others[name](plan, scratch, env, bench)
        except Exception as exc:
            bench.status, bench.error = "error", f"{type(exc).__name__}: {exc}"
            _progress("".join(traceback.format_exception_only(exc)).strip())
        bench.seconds = time.monotonic() - t0
    return [benches[n] for n in names]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    names = _names(args.only)
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if runs < 1:
        raise SystemExit("python -m bench: --runs must be 1 or more")
    plan = suite.Plan(quick=args.quick, long=args.long, side_by_side=args.side_by_side)
    info = machine()
    info["loadavg_per_run"] = []
    started = time.monotonic()
    reps: list[list[Bench]] = []
    with tempfile.TemporaryDirectory(prefix="stretch-bench-") as tmp:
        for k in range(runs):
            info["loadavg_per_run"].append(list(os.getloadavg()))
            if runs > 1:
                _progress(f"run {k + 1} of {runs} (load average "
                          f"{os.getloadavg()[0]:.2f})")
            reps.append(run(names, plan, Path(tmp)))
    benches = merge_runs(reps)
    info["loadavg_end"] = list(os.getloadavg())
    options = {"quick": plan.quick, "long": plan.long, "side_by_side": plan.side_by_side,
               "only": names, "runs": runs,
               "wall_s": round(time.monotonic() - started, 1)}
    day = dt.datetime.now(dt.UTC).date().isoformat()
    out = Path(args.out) if args.out else RESULTS / f"{day}.json"
    write_json(out, info, options, benches)
    mode = "quick" if plan.quick else "full" + (" + 300 s hold" if plan.long else "")
    print(f"Stretch Companion benchmarks ({mode}) on {machine_line(info)}")
    print(f"load average {info['loadavg_start'][0]:.2f} at start, "
          f"{info['loadavg_end'][0]:.2f} at end; {runs} run(s), "
          f"{options['wall_s']:.0f} s in all")
    print()
    print(table(benches))
    print()
    s = summary(benches)
    missed = ", ".join(s["missed"]) or "none"
    print(f"targets met: {s['met']} of {s['targets']}; missed: {missed}")
    if s["errors"]:
        print(f"errors: {', '.join(s['errors'])}")
    print(f"JSON: {out}")
    return 1 if s["errors"] else 0
