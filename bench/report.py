"""Figures, the table and the JSON file; the machine the figures were taken on."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    """One measured figure, the obvious alternative beside it, and its target.

    ``better`` says which way is good ("lower" or "higher"); ``ratio`` is then how many
    times better this box is than the alternative (below 1: worse). ``target`` is an
    operator and a threshold (``("<=", 2.0)``); with ``target_alt`` the threshold is the
    alternative's own figure ("no higher than stock pulse()").
    """

    key: str
    label: str
    value: float | None
    unit: str
    better: str = "lower"
    alt_label: str = ""
    alt_value: float | None = None
    target_op: str | None = None
    target: float | None = None
    target_alt: bool = False
    target_factor: float = 1.0  # with target_alt: the threshold is alt_value x this
    note: str = ""
    runs: list[float | None] = field(default_factory=list)  # one value per run (A B A B)
    alt_runs: list[float | None] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        a, v = self.alt_value, self.value
        if a is None or v is None:
            return None
        if self.better == "lower":
            return a / v if v > 0 else None
        return v / a if a > 0 else None

    @property
    def threshold(self) -> float | None:
        if self.target_alt:
            return None if self.alt_value is None else self.alt_value * self.target_factor
        return self.target

    @property
    def met(self) -> bool | None:
        if self.target_op is None:
            return None
        limit = self.threshold
        if self.value is None or limit is None:
            return False
        return self.value <= limit if self.target_op == "<=" else self.value >= limit

    def target_text(self) -> str:
        if self.target_op is None:
            return ""
        if self.target_alt:
            if self.target_factor > 1.0:
                return f"{self.target_op} alternative x {self.target_factor:g}"
            if self.target_factor != 1.0:
                return f"{self.target_op} alternative / {1 / self.target_factor:g}"
            return f"{self.target_op} alternative"
        return f"{self.target_op} {fmt(self.target, self.unit)}"

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = self.ratio
        out["target_text"] = self.target_text()
        out["threshold"] = self.threshold
        out["met"] = self.met
        for name, values in (("", self.runs), ("alt_", self.alt_runs)):
            known = [v for v in values if v is not None]
            out[f"{name}min"] = min(known) if known else None
            out[f"{name}max"] = max(known) if known else None
        return out

    def spread_text(self, alt: bool = False) -> str:
        """The median with the range over the runs: ``1.2 ms (1.1-1.4, 3 runs)``."""
        values = [v for v in (self.alt_runs if alt else self.runs) if v is not None]
        median = self.alt_value if alt else self.value
        text = fmt(median, self.unit)
        if len(values) > 1:
            text += f" ({fmt(min(values), '')}-{fmt(max(values), '')})"
        return text


def merge_runs(reps: list[list[Bench]]) -> list[Bench]:
    """One bench per name from several runs of the same benchmarks: each figure's value
    (and its alternative's) is the median over the runs, its runs kept for min and max."""
    merged: list[Bench] = []
    for first in reps[0]:
        same = [b for rep in reps for b in rep if b.name == first.name]
        ok = [b for b in same if b.status == "ok"] or same
        out = Bench(first.name, first.title, status=ok[0].status, error=ok[0].error,
                    seconds=sum(b.seconds for b in same))
        keys: list[str] = []
        for b in ok:
            keys += [f.key for f in b.figures if f.key not in keys]
        for key in keys:
            figures = [next((f for f in b.figures if f.key == key), None) for b in ok]
            proto = next(f for f in figures if f is not None)
            runs = [f.value if f is not None else None for f in figures]
            alts = [f.alt_value if f is not None else None for f in figures]
            known = [v for v in runs if v is not None]
            alt_known = [v for v in alts if v is not None]
            out.figures.append(Figure(**{
                **{k: getattr(proto, k) for k in proto.__dataclass_fields__},
                "value": statistics.median(known) if known else None,
                "alt_value": statistics.median(alt_known) if alt_known else None,
                "runs": runs, "alt_runs": alts,
            }))
        out.notes = list(ok[0].notes)
        if len(same) > 1:
            out.notes.append(f"{len(same)} runs, interleaved with the other benchmarks' "
                             "(A B A B); each figure is the median, (min-max) beside it; "
                             "notes are from the first run")
            errors = [b.error for b in same if b.status == "error"]
            if errors and out.status == "ok":
                out.notes.append(f"{len(errors)} run(s) failed: {errors[0]}")
        out.raw = {"runs": [b.raw for b in same]} if len(same) > 1 else first.raw
        merged.append(out)
    return merged


@dataclass
class Bench:
    """One benchmark's figures, notes and raw measurements."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"  # ok, skipped, error
    error: str = ""
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "status": self.status,
            "error": self.error,
            "seconds": round(self.seconds, 2),
            "figures": [f.as_json() for f in self.figures],
            "notes": self.notes,
            "raw": self.raw,
        }


def fmt(value: float | None, unit: str) -> str:
    """A value with 3 significant figures and its unit."""
    if value is None:
        return "n/a"
    mag = abs(value)
    if mag == 0:
        text = "0"
    elif mag >= 1000:
        text = f"{value:,.0f}"
    elif mag >= 100:
        text = f"{value:.0f}"
    elif mag >= 10:
        text = f"{value:.1f}"
    elif mag >= 1:
        text = f"{value:.2f}"
    elif mag >= 0.001:
        text = f"{value:.3g}"
    else:
        text = f"{value:.2e}"
    if not unit:
        return text
    return f"{text}{unit}" if unit in ("%", "x") else f"{text} {unit}"


def ratio_text(figure: Figure) -> str:
    r = figure.ratio
    if r is None:
        return ""
    if r >= 1:
        return f"{fmt(r, '')}x better"
    return f"{fmt(1 / r, '')}x worse"


def met_text(figure: Figure) -> str:
    m = figure.met
    return "" if m is None else ("met" if m else "NOT MET")


def table(benches: list[Bench]) -> str:
    """The results as a plain-text table, one block per benchmark."""
    head = ("figure", "this box", "alternative", "vs alt", "target", "met")
    rows: list[tuple[str, ...] | str] = []
    for bench in benches:
        status = "" if bench.status == "ok" else f" [{bench.status.upper()}]"
        rows.append(f"{bench.name}: {bench.title}{status} ({bench.seconds:.0f} s)")
        if bench.status == "error":
            rows.append(f"    error: {bench.error}")
        for f in bench.figures:
            alt = ""
            if f.alt_label or f.alt_value is not None:
                alt = f"{f.alt_label}: {f.spread_text(True)}" if f.alt_label else \
                    f.spread_text(True)
            rows.append(("  " + f.label, f.spread_text(), alt, ratio_text(f),
                         f.target_text(), met_text(f)))
        for note in bench.notes:
            rows.append(f"    note: {note}")
    widths = [len(h) for h in head]
    for row in rows:
        if isinstance(row, tuple):
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    line = "  ".join("-" * w for w in widths)

    def cells(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    out = [cells(head), line]
    for row in rows:
        out.append(row if isinstance(row, str) else cells(row))
    return "\n".join(out)


def summary(benches: list[Bench]) -> dict[str, Any]:
    targets = [f for b in benches for f in b.figures if f.met is not None]
    missed = [f.key for f in targets if not f.met]
    return {"targets": len(targets), "met": len(targets) - len(missed), "missed": missed,
            "errors": [b.name for b in benches if b.status == "error"],
            "skipped": [b.name for b in benches if b.status == "skipped"]}


# ---- the machine ------------------------------------------------------------------------


def _cpu_model() -> str:
    """'model name' from /proc/cpuinfo (x86), else 'Model'/'Hardware' (a Pi)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    fields.setdefault(key.strip().lower(), value.strip())
    except OSError:
        pass
    for key in ("model name", "model", "hardware", "cpu model"):
        value = fields.get(key, "")
        if value and not value.isdigit():
            return value
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _command_line(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.SubprocessError):
        return None
    text = (done.stdout or done.stderr).strip().splitlines()
    return text[0] if done.returncode == 0 and text else None


def _pi_model() -> str:
    try:
        with open("/proc/device-tree/model", encoding="ascii", errors="replace") as f:
            return f.read().strip("\x00\n ")
    except OSError:
        return ""


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    now = dt.datetime.now(dt.UTC)
    mem = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = round(int(line.split()[1]) / 1024)
    except OSError:
        pass
    return {
        "date": now.isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "pi_model": _pi_model(),
        "cpu_model": _cpu_model(),
        "cpus": os.cpu_count(),
        "mem_mb": mem,
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "gpiozero": _version("gpiozero"),
        "pyttsx3": _version("pyttsx3"),
        "espeak_ng": _command_line(["espeak-ng", "--version"]),
        "commit": _command_line(["git", "rev-parse", "--short", "HEAD"]),
        "loadavg_start": list(os.getloadavg()),
    }


def machine_line(info: dict[str, Any]) -> str:
    model = info.get("pi_model") or info.get("cpu_model")
    return (f"{model}, {info.get('cpus')} cores, {info.get('mem_mb')} MB, "
            f"{info.get('platform')}, Python {info.get('python')}, gpiozero "
            f"{info.get('gpiozero')}, pyttsx3 {info.get('pyttsx3')}; "
            f"{info.get('date')}, commit {info.get('commit')}")


def write_json(path: Path, info: dict[str, Any], options: dict[str, Any],
               benches: list[Bench]) -> None:
    data = {
        "schema": 1,
        "machine": info,
        "options": options,
        "summary": summary(benches),
        "benchmarks": {b.name: b.as_json() for b in benches},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
