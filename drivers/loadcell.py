"""The load-cell layer: any strain-gauge ADC, its tare and calibration, tension in units.

A chip driver (``drivers/nau7802.py``; an HX711 would be one more file and its fake)
implements ``LoadCell``: raw signed counts, nothing else. Everything that turns counts
into tension lives here once: ``Calibration`` (tare offset and counts per kg, pure
maths, saved as small JSON) and ``Scale`` (a cell plus its calibration: tare and
calibrate by averaging real conversions). Uncalibrated, tension is in relative units
("rel") of ``NOMINAL_COUNTS_PER_UNIT`` counts; calibrated against a known weight, in kg.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class SensorError(Exception):
    """The load cell is absent, unplugged or misbehaving; the message says what failed."""


class LoadCell(Protocol):
    """What the strap needs from a load-cell ADC. Every failure raises ``SensorError``.

    A driver may also give ``full_scale``: the (lowest, highest) counts a conversion can
    report, where an input beyond the range is clipped (24-bit signed when it does not).
    """

    def begin(self) -> None:
        """Set the chip up (again after a ``SensorError``); raise if it does not answer."""
        ...

    def read(self) -> int | None:
        """The newest conversion as signed counts, or None if no new one is ready."""
        ...

    def read_blocking(self, timeout_s: float | None = None) -> int:
        """Wait for the next conversion, up to ``timeout_s`` (None: the chip's default)."""
        ...

    def close(self) -> None:
        """Stop using the chip (powered down where it can be); never raises."""
        ...


NOMINAL_COUNTS_PER_UNIT = 85_000.0
"""Counts per relative unit when uncalibrated: roughly 1 kg for a 2 mV/V, 50 kg load cell
at gain 128 and a 3.3 V LDO, so uncalibrated thresholds stay in a sensible range."""


MAX_OFFSET = 2 ** 24  # counts: a 24-bit converter's zero lies within its range
SCALE_RANGE = (100.0, 2 ** 22)  # counts per kg: a full scale of 2 kg to some 84 tonnes
MIN_KNOWN_KG = 1.0  # a lighter reference weight is lost in the noise of a strap


class Sleeper(Protocol):
    """The part of a clock a blocking read needs (``drivers.clock.Clock`` has it)."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


def read_within(read: Callable[[], int | None], clock: Sleeper, timeout_s: float,
                poll_s: float, where: str) -> int:
    """Call ``read()`` every ``poll_s`` (clock s) until it gives a conversion; a
    ``SensorError`` naming ``where`` after ``timeout_s``. One blocking read for every chip."""
    deadline = clock.now() + timeout_s
    while True:
        value = read()
        if value is not None:
            return value
        now = clock.now()
        if now >= deadline:
            raise SensorError(f"{where}: no conversion within {timeout_s:g} s")
        clock.sleep(min(poll_s, deadline - now))


def counts_to_units(counts: float, offset: float, scale: float) -> float:
    """Tension from a raw count: ``(counts - offset) / scale`` (scale: counts per unit)."""
    return (counts - offset) / scale


def scale_from_known(loaded_counts: float, offset: float, known_kg: float) -> float:
    """Counts per kg from the mean reading with ``known_kg`` on the strap (may be < 0
    if the load cell is wired the other way round)."""
    if known_kg <= 0:
        raise ValueError(f"known weight must be > 0 kg, got {known_kg}")
    delta = loaded_counts - offset
    if abs(delta) < 100:
        raise ValueError(
            f"a {known_kg:g} kg load changed the reading by only {delta:.0f} counts; "
            "is the load cell connected?"
        )
    return delta / known_kg


@dataclass(frozen=True)
class Calibration:
    """Tare ``offset`` (counts) and ``scale`` (counts per kg; None = uncalibrated)."""

    offset: float
    scale: float | None = None

    @property
    def units(self) -> str:
        """ "kg" once calibrated against a known weight, else "rel"."""
        return "kg" if self.scale is not None else "rel"

    def to_units(self, counts: float, nominal: float = NOMINAL_COUNTS_PER_UNIT) -> float:
        """A raw count as tension in ``units`` (``nominal`` counts per unit uncalibrated)."""
        return counts_to_units(counts, self.offset, self.scale or nominal)

    def tared(self, slack_counts: Iterable[float]) -> Calibration:
        """Zeroed on the mean of counts read with the strap slack; the scale is kept."""
        return Calibration(offset=statistics.fmean(slack_counts), scale=self.scale)

    def weighed(self, loaded_counts: float, known_kg: float) -> Calibration:
        """Scaled from the mean count with ``known_kg`` hanging on the tared strap."""
        return Calibration(self.offset, scale_from_known(loaded_counts, self.offset, known_kg))


class Scale:
    """A load cell and its calibration: tare, calibrate, readings in kg (or relative units)."""

    def __init__(
        self,
        cell: LoadCell,
        calibration: Calibration | None = None,
        nominal_counts_per_unit: float = NOMINAL_COUNTS_PER_UNIT,
    ) -> None:
        self._cell = cell
        self.calibration = calibration or Calibration(offset=0.0)
        self._nominal = nominal_counts_per_unit

    @property
    def units(self) -> str:
        """ "kg" once calibrated against a known weight, else "rel"."""
        return self.calibration.units

    def to_units(self, counts: float) -> float:
        """A raw count as tension in ``units``."""
        return self.calibration.to_units(counts, self._nominal)

    def samples(self, n: int, timeout_s: float | None = None) -> list[int]:
        """The next ``n`` conversions (each waited for up to ``timeout_s``)."""
        if n < 1:
            raise ValueError("n must be >= 1")
        return [self._cell.read_blocking(timeout_s) for _ in range(n)]

    def tare(self, n: int = 20) -> float:
        """Zero on the mean of ``n`` samples with the strap slack; returns the offset."""
        self.calibration = self.calibration.tared(self.samples(n))
        return self.calibration.offset

    def calibrate(self, known_kg: float, n: int = 20) -> float:
        """Set the scale from ``known_kg`` hanging on the tared strap; returns counts/kg."""
        self.calibration = self.calibration.weighed(statistics.fmean(self.samples(n)), known_kg)
        assert self.calibration.scale is not None
        return self.calibration.scale

    def read(self) -> float | None:
        """Newest tension in ``units``, or None if no new conversion."""
        counts = self._cell.read()
        return None if counts is None else self.to_units(counts)

    def read_blocking(self, timeout_s: float | None = None) -> float:
        """The next tension in ``units``, waiting up to ``timeout_s``."""
        return self.to_units(self._cell.read_blocking(timeout_s))


def save_calibration(path: str | os.PathLike[str], offset: float, scale: float | None) -> None:
    """Write the calibration as small JSON, atomically (temp file, fsync, os.replace)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": 1, "offset": offset, "scale": scale}, indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        dir_fd = os.open(target.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load_calibration(path: str | os.PathLike[str]) -> Calibration | None:
    """The saved calibration, None if the file does not exist; ValueError if malformed."""
    source = Path(path)
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{source}: cannot read calibration: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{source}: calibration must be a JSON object")
    offset, scale = data.get("offset"), data.get("scale")
    if (isinstance(offset, bool) or not isinstance(offset, int | float)
            or not abs(offset) <= MAX_OFFSET):  # also refuses NaN
        raise ValueError(f"{source}: 'offset' must be a number of counts from "
                         f"{-MAX_OFFSET} to {MAX_OFFSET}, got {offset!r}")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, int | float)
        or not SCALE_RANGE[0] <= abs(scale) <= SCALE_RANGE[1]
    ):
        raise ValueError(f"{source}: 'scale' must be {SCALE_RANGE[0]:.0f} to "
                         f"{SCALE_RANGE[1]:.0f} counts per kg (either sign) or null, "
                         f"got {scale!r}")
    return Calibration(offset=float(offset), scale=None if scale is None else float(scale))
