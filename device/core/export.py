"""Sessions as CSV, onto a stream it is given (pure: no file is opened here).

One row per hold with the session's columns repeated (``CSV_COLUMNS``); a session without
holds is one row with the hold's columns empty.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from device.core.records import RELAX_FIELDS, SessionRecord

CSV_COLUMNS = ("started", "ended", "outcome", "routine", "leg", "round", "planned_s",
               "held_s", "hold_ended", "mean", "peak", "steadiness", "tightness",
               "overpull_s", *RELAX_FIELDS)


def csv_rows(sessions: Iterable[SessionRecord]) -> Iterator[list[Any]]:
    for s in sessions:
        head = [s.started.isoformat(), s.ended.isoformat(), s.outcome, s.routine]
        if not s.holds:
            yield head + [""] * (len(CSV_COLUMNS) - len(head))
        for h in s.holds:
            yield (head + [h.leg, h.round, _num(h.planned_s), _num(h.held_s), h.ended]
                   + ["" if v is None else _num(v)
                      for v in (h.mean, h.peak, h.steadiness, h.tightness, h.overpull_s,
                                *(getattr(h, f) for f in RELAX_FIELDS))])


def _num(value: Any) -> Any:
    """A float as a person writes it: at most 3 decimals (59.99999999999999 -> 60.0)."""
    return round(value, 3) if isinstance(value, float) else value


def write_csv(sessions: Iterable[SessionRecord], out: TextIO) -> int:
    """Write the header and one row per hold to ``out``, row by row; rows written."""
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    n = 0
    for row in csv_rows(sessions):
        w.writerow(row)
        n += 1
    return n
