"""The ``history`` command: a table, JSON, CSV and a PNG plot of past sessions.

JSON (``to_json``): a list of sessions, oldest first, each::

    {"started": ISO 8601 with offset, "ended": ISO 8601 with offset,
     "outcome": "complete" | "cancelled" | "interrupted", "routine": str,
     "clock": "synced" | "phone" | "corrected" | "untrusted",
     "holds": [{"leg": "right" | "left", "round": int (1-based), "planned_s": float,
                "held_s": float, "ended": "complete" | "early" | "cancelled" | "interrupted",
                "mean": float | null, "peak": float | null, "steadiness": float | null,
                "tightness": "easy" | "tight" | "very_tight" | null,
                "overpull_s": float | null,
                "settled": float | null, "relax_30": float | null, "relax_45": float | null,
                "relax_end": float | null, "tau_s": float | null, "fit": float | null,
                "tension_s": float | null, "index": float | null,
                "hurt": bool (a long press in the question),
                "pre_s": float | null (s in the stretch before the hold clock: measured by the
                          strap, else from the set-up step raising the leg),
                "base_s": float | null (the hold length set when it was held)}],
     "legs": {"right": {"settled", "relax_30", "relax_end", "tau_s", "index"},
              "left": {...},
              "asymmetry": {"settled", "relax_30", "tau_s", "index"}}}   (with a strap fit)

The relaxation figures (README "The strap as a measuring instrument"): the settled force
(kg or rel), percent of it relaxed 30 s and 45 s later and at the end, the time constant
(s), the fit's quality (0..100), the time under tension (s) and the tightness index (100 =
this leg's first weeks); ``legs`` has each leg's means and their left/right asymmetry in
percent ((right - left) / mean).

CSV (``to_csv``): one row per hold with the session's columns repeated (``CSV_COLUMNS``);
a session without holds (cancelled during set-up) has one row with empty hold columns.
Strap figures (``mean``, ``peak``, ``steadiness``, ``overpull_s``) are empty when no sensor
was fitted; ``tightness`` (easy, tight, very_tight) is empty when the hold was not asked about.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO

from device.core.export import write_csv
from device.core.records import LEGS, SessionRecord, session_to_dict
from device.core.streaks import local_zone
from device.core.tightness import disagreement, session_tightness
from device.store.paths import default_fallback_path, default_history_path
from device.store.protocol import SessionStore
from device.store.sqlite import History, HistoryError

PLOT_HINT = "pip install 'stretch-companion[plot]'"


class PlotUnavailable(HistoryError):
    """matplotlib is not installed."""


def to_json(sessions: Iterable[SessionRecord]) -> str:
    """Sessions as a JSON list (shape in the module docstring)."""
    out = io.StringIO()
    write_json(sessions, out)
    return out.getvalue()


def write_json(sessions: Iterable[SessionRecord], out: TextIO) -> int:
    """Stream sessions to ``out`` as the JSON list of ``to_json`` (no trailing newline),
    one session at a time: memory stays flat however long the history. Sessions written."""
    n = 0
    out.write("[")
    for s in sessions:
        text = json.dumps(session_to_dict(s), indent=2)
        out.write(("," if n else "") + "\n  " + text.replace("\n", "\n  "))
        n += 1
    out.write("\n]" if n else "]")
    return n


def to_csv(sessions: Iterable[SessionRecord], path: Path | str | TextIO) -> int:
    """Write one row per hold to ``path`` ("-" or a text stream for a stream), row by row
    as the sessions come; rows written."""
    if isinstance(path, io.TextIOBase) or hasattr(path, "write"):
        out: Any = path
        close = False
    elif str(path) == "-":
        out, close = sys.stdout, False
    else:
        out, close = open(path, "w", encoding="utf-8", newline=""), True
    try:
        n = write_csv(sessions, out)
    finally:
        if close:
            out.close()
    return n


def _leg_cell(s: SessionRecord, leg: str) -> str:
    hs = [h for h in s.holds if h.leg == leg]
    if not hs:
        return "-"
    text = "+".join(f"{h.held_s:.0f}" for h in hs) + " s"
    return text + (" early" if any(h.ended == "early" for h in hs) else "")


def _steady_cell(s: SessionRecord) -> str:
    parts = []
    for leg in LEGS:
        vals = [h.steadiness for h in s.holds if h.leg == leg and h.steadiness is not None]
        if vals:
            parts.append(f"{leg[0].upper()} {sum(vals) / len(vals):.0f}")
    return " ".join(parts) or "-"


def _tight_cell(s: SessionRecord) -> str:
    """Each leg's tightness index and relaxation at 30 s, and the index's asymmetry."""
    figures = session_tightness(s.holds)
    if figures is None:
        return "-"
    parts = []
    for leg in LEGS:
        f = figures[leg]
        if f["index"] is not None or f["relax_30"] is not None:
            index = "-" if f["index"] is None else f"{f['index']:.0f}"
            relax = "" if f["relax_30"] is None else f"/{f['relax_30']:.0f}%"
            parts.append(f"{leg[0].upper()} {index}{relax}")
    asym = figures["asymmetry"]["index"]
    if asym is not None:
        parts.append(f"R-L {asym:+.0f}%")
    return " ".join(parts) or "-"


def disagreement_lines(recent: Sequence[SessionRecord]) -> list[str]:
    """A plain line per leg where the strap's index and the answers to "how tight?" went
    opposite ways over the last three sessions (``recent`` newest first)."""
    out = []
    for leg in LEGS:
        points = []
        for s in reversed(recent):
            mine = [h for h in s.holds if h.leg == leg]
            index = [h.index for h in mine if h.index is not None]
            answers = [h.tightness for h in mine if h.tightness is not None]
            if index and answers:
                points.append({"index": sum(index) / len(index), "answer": answers[-1]})
        way = disagreement(points, leg)
        if way == "looser":
            out.append(f"Note: over the last three sessions your {leg} leg measured looser "
                       "on the strap while your answers said tighter.")
        elif way == "tighter":
            out.append(f"Note: over the last three sessions your {leg} leg measured tighter "
                       "on the strap while your answers said easier.")
    return out


def history_table(history: SessionStore, now: datetime, tz: tzinfo, limit: int = 10,
                  weeks: int = 8) -> str:
    """The text report: recent sessions, then today's minutes, streak and weekly counts."""
    recent = history.recent(limit)
    lines = [f"Recent sessions ({zone_name(tz, now)}):"]
    if not recent:
        lines.append("  none yet")
    else:
        lines.append(f"  {'date':16}  {'outcome':11}  {'right':13}  {'left':13}  "
                     f"{'steadiness':12}  tightness index/relaxed at 30 s")
        for s in recent:
            when = s.started.astimezone(tz).strftime("%Y-%m-%d %H:%M")
            lines.append(f"  {when:16}  {s.outcome:11}  {_leg_cell(s, 'right'):13}  "
                         f"{_leg_cell(s, 'left'):13}  {_steady_cell(s):12}  {_tight_cell(s)}"
                         .rstrip())
    lines += disagreement_lines(recent)
    streak = history.streak_days(now, tz)
    week = history.sessions_this_week(now, tz)
    lines += ["", f"Today: {history.minutes_today(now, tz):.1f} min held. "
                  f"Streak: {streak} day{'s' if streak != 1 else ''}. "
                  f"This week: {week} complete session{'s' if week != 1 else ''}.",
              "Complete sessions per week (weeks start on Monday):"]
    for monday, n in history.sessions_per_week(now, weeks, tz):
        lines.append(f"  {monday.isoformat()}  {'#' * min(n, 40):<14} {n}")
    return "\n".join(lines)


def zone_name(tz: tzinfo, now: datetime | None = None) -> str:
    """A readable name for ``tz``: its IANA key, or (for the machine's /etc/localtime,
    whose key is just "localtime") "local time" with its abbreviation and UTC offset."""
    key = getattr(tz, "key", None)
    if key and key != "localtime":
        return str(key)
    local = (now or datetime.now(UTC)).astimezone(tz)
    z = local.strftime("%z")
    names = [] if not z else [f"UTC{z[:3]}:{z[3:5]}"]
    abbrev = local.tzname() or ""
    if abbrev and abbrev[0] not in "+-" and not abbrev.startswith("UTC"):
        names.insert(0, abbrev)  # "CET", not "+03"
    return f"local time ({', '.join(names)})" if names else "local time"


# how each leg is drawn: different markers and dashes, so equal values show both legs
LEG_STYLE = {
    "right": {"color": "tab:blue", "marker": "o", "linestyle": "-", "markersize": 6},
    "left": {"color": "tab:orange", "marker": "s", "linestyle": (0, (5, 3)), "markersize": 9,
             "markerfacecolor": "none", "markeredgewidth": 1.5},
}
PLANNED_STYLE = {"right": "-", "left": (0, (2, 2))}
MIN_SPAN_DAYS = 7.0  # the date axis shows at least a week, so its ticks are distinct days


def figure(sessions: Sequence[SessionRecord], tz: tzinfo, now: datetime | None = None) -> Any:
    """The chart as a matplotlib Figure: hold seconds per leg over time, strap steadiness
    when recorded, and each leg's tightness index (100 = its first weeks) when the strap's
    fit gave one. With no sessions: the last weeks, empty, and says so."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.dates import MO, AutoDateLocator, DateFormatter, WeekdayLocator
        from matplotlib.figure import Figure
    except ImportError as e:
        raise PlotUnavailable(f"plotting needs matplotlib: {PLOT_HINT}") from e

    now = (now or datetime.now(tz)).astimezone(tz)

    def local(dt: datetime) -> datetime:
        return dt.astimezone(tz).replace(tzinfo=None)

    steady = any(h.steadiness is not None for s in sessions for h in s.holds)
    indexed = any(h.index is not None for s in sessions for h in s.holds)
    rows = 1 + steady + indexed
    fig = Figure(figsize=(9, 2.2 + 2.2 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, sharex=True, squeeze=False)[:, 0]
    index_ax = axes[-1] if indexed else None
    fig.suptitle("Stretch Companion: hold time per leg")
    early_labelled = False
    top = 60.0
    for leg in LEGS:
        xs, held, planned, early_x, early_y, sx, sy = [], [], [], [], [], [], []
        ix: list[datetime] = []
        iy: list[float] = []
        for s in sessions:
            hs = [h for h in s.holds if h.leg == leg]
            if not hs:
                continue
            x, mean_held = local(s.started), sum(h.held_s for h in hs) / len(hs)
            xs.append(x)
            held.append(mean_held)
            planned.append(max(h.planned_s for h in hs))
            if any(h.ended == "early" for h in hs):
                early_x.append(x)
                early_y.append(mean_held)
            vals = [h.steadiness for h in hs if h.steadiness is not None]
            if vals:
                sx.append(x)
                sy.append(sum(vals) / len(vals))
            index = [h.index for h in hs if h.index is not None]
            if index:
                ix.append(x)
                iy.append(sum(index) / len(index))
        top = max([top, *held, *planned])
        style = LEG_STYLE[leg]
        axes[0].plot(xs, held, label=f"{leg} leg, held", **style)
        axes[0].step(xs, planned, where="post", color=style["color"], alpha=0.5,
                     linestyle=PLANNED_STYLE[leg], label=f"{leg} leg, planned")
        if early_x:
            axes[0].plot(early_x, early_y, "x", color="tab:red", markersize=9,
                         label="_" if early_labelled else "ended early")
            early_labelled = True
        if steady:
            axes[1].plot(sx, sy, label=f"{leg} leg", **style)
        if index_ax is not None:
            index_ax.plot(ix, iy, label=f"{leg} leg", **style)
    axes[0].set_ylabel("hold (seconds)")
    axes[0].set_ylim(0, top * 1.1)
    if steady:
        axes[1].set_ylabel("strap steadiness (0-100)")
        axes[1].set_ylim(0, 100)
        axes[1].legend(loc="lower right", fontsize="small")
    if index_ax is not None:
        index_ax.axhline(100, color="grey", linewidth=0.8, linestyle=":")
        index_ax.set_ylabel("tightness index\n(100 = first weeks)")
        index_ax.legend(loc="lower right", fontsize="small")
    times = [local(s.started) for s in sessions]
    last = max(times) if times else local(now)
    first = min(times) if times else last - timedelta(days=4 * MIN_SPAN_DAYS)
    pad = timedelta(days=1)
    if last - first < timedelta(days=MIN_SPAN_DAYS):  # e.g. two sessions on one day
        mid = first + (last - first) / 2
        half = timedelta(days=MIN_SPAN_DAYS / 2)
        first, last = mid - half, mid + half
    axes[-1].set_xlim(first - pad, last + pad)
    span_days = (last - first).days + 2
    if span_days <= 120:
        axes[-1].xaxis.set_major_locator(WeekdayLocator(byweekday=MO))
        ticks = "ticks on Mondays"
    else:
        axes[-1].xaxis.set_major_locator(AutoDateLocator(minticks=4, maxticks=10))
        ticks = "dates"
    axes[-1].xaxis.set_major_formatter(DateFormatter("%d %b" if span_days <= 300
                                                     else "%d %b %Y"))
    if sessions:
        axes[0].legend(loc="lower right", fontsize="small")
    else:
        axes[0].text(0.5, 0.5, "no sessions yet", ha="center", va="center",
                     transform=axes[0].transAxes)
    axes[-1].set_xlabel(f"date ({ticks}, {zone_name(tz, now)})")
    for ax in axes:
        ax.grid(alpha=0.3)
    return fig


def plot(sessions: Sequence[SessionRecord], path: Path | str, tz: tzinfo,
         now: datetime | None = None) -> None:
    """Save the chart of ``figure`` as a PNG at ``path``."""
    figure(sessions, tz, now).savefig(path, format="png", dpi=100)


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``history`` subcommand."""
    parser.add_argument("--history", metavar="FILE", type=Path,
                        help="history database (default: the per-user or service state dir)")
    parser.add_argument("--service", action="store_true",
                        help="use the service's history (/var/lib/stretch-companion)")
    parser.add_argument("--json", action="store_true", help="print all sessions as JSON")
    parser.add_argument("--csv", metavar="FILE", help="write one row per hold to FILE (- = stdout)")
    parser.add_argument("--plot", metavar="FILE", help="write a PNG chart to FILE (needs [plot])")
    parser.add_argument("--report", metavar="FILE",
                        help="write a one-page HTML report of the strap's measure to FILE "
                             "(per leg over weeks, for a physiotherapist)")
    parser.add_argument("--limit", type=_limit, default=10,
                        help=f"sessions in the table (10; at most {MAX_LIMIT})")
    parser.add_argument("--weeks", type=_weeks, default=8,
                        help=f"weeks in the weekly counts (8; at most {MAX_WEEKS})")


MAX_LIMIT = 1_000_000  # sessions: more than a lifetime of daily stretches
MAX_WEEKS = 5200  # a hundred years


def _positive(text: str, most: int | None = None) -> int:
    """A whole number from 1 to ``most`` (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1 or most is not None and value > most:
        shown = text if len(text) <= 20 else text[:17] + "..."
        raise argparse.ArgumentTypeError(
            f"{shown} must be from 1 to {most}" if most else f"{value} must be 1 or more")
    return value


def _limit(text: str) -> int:
    return _positive(text, MAX_LIMIT)


def _weeks(text: str) -> int:
    return _positive(text, MAX_WEEKS)


def _open_for_reading(path: Path) -> History:
    """Writable if allowed (so an old schema is upgraded), else read-only."""
    try:
        return History(path)
    except HistoryError as e:
        try:
            return History(path, read_only=True)
        except HistoryError:
            raise e from None


def _sim_history_hint(path: Path) -> str | None:
    """A note for someone who tried the simulator: it keeps its own file beside ``path``."""
    sim = path.with_name("sim-history.db")
    if sim == path or not sim.is_file():
        return None
    return (f"Note: the simulator keeps its own history in {sim}; to see it: "
            f"stretch-companion history --history {sim}")


def history_main(args: argparse.Namespace, now: datetime | None = None,
                 tz: tzinfo | None = None, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """Run ``history`` with the options of ``add_history_arguments``; the exit code.

    Prints the table (or JSON with --json; nothing more with --csv -); --csv/--plot write
    files. Times are shown in ``tz`` (default: the machine's zone). Exit 0, or 1 with
    one line on stderr when the file cannot be read or matplotlib is missing.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    tz = tz or local_zone()
    now = (now or datetime.now(tz)).astimezone(tz)
    given = getattr(args, "history", None)
    path = Path(given) if given else default_history_path(getattr(args, "service", False))
    sim_hint = None if given else _sim_history_hint(path)
    want_json = getattr(args, "json", False)
    csv_path, plot_path = getattr(args, "csv", None), getattr(args, "plot", None)
    fallback = default_fallback_path(path)
    try:
        if path.exists() and not path.is_file():  # a folder, a FIFO (would hang), a device
            print(f"stretch-companion: history file {path}: not a regular file", file=err)
            return 1
        if not path.exists():
            if want_json:
                print("[]", file=out)
            elif csv_path != "-":
                print(f"No sessions recorded yet ({path}).", file=out)
            sessions: list[SessionRecord] = []
            if csv_path:
                to_csv(sessions, csv_path if csv_path != "-" else out)
            if plot_path:
                plot(sessions, plot_path, tz, now)
            if sim_hint:
                print(sim_hint, file=err)
            return 0
        with _open_for_reading(path) as h:
            if want_json:  # streamed: read and written a batch of sessions at a time
                write_json(h.iter_sessions(), out)
                print(file=out)
            elif not csv_path and not plot_path:  # a file asked for: the file, not the table
                print(history_table(h, now, tz, getattr(args, "limit", 10),
                                    getattr(args, "weeks", 8)), file=out)
            if csv_path:
                n = to_csv(h.iter_sessions(), csv_path if csv_path != "-" else out)
                if csv_path != "-":
                    print(f"Wrote {n} row(s) to {csv_path}.", file=err)
            if plot_path:  # aggregated in SQL: a point per leg per day (or wider bucket)
                plot(h.plot_buckets(), plot_path, tz, now)
                print(f"Wrote chart to {plot_path}.", file=err)
            report_path = getattr(args, "report", None)
            if report_path:
                # deferred: the report's module only for --report
                from device.apps.strap_report import write_report

                write_report(h.sessions(), report_path, tz, now)
                print(f"Wrote report to {report_path}.", file=err)
            if sim_hint and h.count() == 0:
                print(sim_hint, file=err)
    except BrokenPipeError:
        raise  # `history | head`: the reader left; the command line ends quietly
    except (HistoryError, OSError) as e:
        print(f"stretch-companion: {e}", file=err)
        return 1
    if fallback.exists():
        print(f"Note: sessions the database could not take are waiting in {fallback}; "
              "the box imports them when it next saves.", file=err)
    return 0
