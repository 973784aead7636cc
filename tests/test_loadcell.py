"""The load-cell layer: conversion maths, tare and calibration over any cell, the saved
file, and the rule that drivers know nothing of the product."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from drivers.loadcell import (
    NOMINAL_COUNTS_PER_UNIT,
    Calibration,
    Scale,
    SensorError,
    counts_to_units,
    load_calibration,
    save_calibration,
    scale_from_known,
)

DRIVERS = Path(__file__).resolve().parents[1] / "drivers"


class ScriptedCell:
    """A second chip in a few lines: counts from a list, None when 'not ready'."""

    def __init__(self, counts: list[int | None]) -> None:
        self.counts = list(counts)
        self.begun = self.closed = False

    def begin(self) -> None:
        self.begun = True

    def read(self) -> int | None:
        if not self.counts:
            raise SensorError("scripted cell ran out of counts")
        return self.counts.pop(0)

    def read_blocking(self, timeout_s: float | None = None) -> int:
        while (value := self.read()) is None:
            pass
        return value

    def close(self) -> None:
        self.closed = True


# --- pure maths ------------------------------------------------------------------------


def test_conversion_maths() -> None:
    assert counts_to_units(-150_000 + 4 * 85_000, -150_000, 85_000) == pytest.approx(4.0)
    assert counts_to_units(-150_000, -150_000, 85_000) == 0.0
    assert scale_from_known(700_000, -150_000, 10.0) == pytest.approx(85_000)
    with pytest.raises(ValueError, match="> 0 kg"):
        scale_from_known(700_000, -150_000, 0.0)
    with pytest.raises(ValueError, match="connected"):
        scale_from_known(-149_990, -150_000, 10.0)


def test_calibration_converts_known_counts() -> None:
    kg = Calibration(offset=-150_000.0, scale=85_000.0)
    assert kg.units == "kg"
    assert kg.to_units(-150_000 + 85_000 * 2.5) == pytest.approx(2.5)
    assert kg.to_units(-150_000 - 42_500) == pytest.approx(-0.5)
    reversed_cell = Calibration(offset=1_000.0, scale=-50_000.0)  # wired the other way round
    assert reversed_cell.to_units(1_000 - 150_000) == pytest.approx(3.0)
    rel = Calibration(offset=200.0)
    assert rel.units == "rel"
    assert rel.to_units(200 + NOMINAL_COUNTS_PER_UNIT) == pytest.approx(1.0)
    assert rel.to_units(200 + 30_000, nominal=10_000.0) == pytest.approx(3.0)


def test_tare_from_samples_keeps_the_scale_and_weighing_keeps_the_offset() -> None:
    cal = Calibration(offset=5.0, scale=-80_000.0)
    tared = cal.tared([-150_010, -149_990, -150_000])
    assert tared == Calibration(offset=-150_000.0, scale=-80_000.0)
    weighed = tared.weighed(-150_000 + 10 * 85_000, 10.0)
    assert weighed == Calibration(offset=-150_000.0, scale=85_000.0)
    assert weighed.to_units(-150_000 + 85_000) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="connected"):
        tared.weighed(-150_050, 10.0)


# --- a scale over any LoadCell ------------------------------------------------------------


def test_scale_tares_calibrates_and_reads_over_any_load_cell() -> None:
    cell = ScriptedCell([1_000, None, 1_010, 990,  # slack: zero at 1000
                         201_000, 200_990, 201_010,  # 10 kg on: 20 000 counts per kg
                         None, 41_000, 61_000])
    scale = Scale(cell)
    assert scale.units == "rel"
    assert scale.tare(3) == pytest.approx(1_000.0)
    assert scale.calibrate(10.0, 3) == pytest.approx(20_000.0)
    assert scale.units == "kg" and scale.calibration == Calibration(1_000.0, 20_000.0)
    assert scale.read() is None  # nothing new from the chip: no reading
    assert scale.read() == pytest.approx(2.0)
    assert scale.read_blocking() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="n must be"):
        scale.tare(0)


def test_scale_uncalibrated_uses_the_nominal_counts() -> None:
    scale = Scale(ScriptedCell([500, 500 + 2 * 4_000]), nominal_counts_per_unit=4_000.0)
    scale.tare(1)
    assert scale.read() == pytest.approx(2.0)


# --- the saved calibration -------------------------------------------------------------


def test_calibration_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "strap.json"
    assert load_calibration(path) is None
    save_calibration(path, -150_123.5, 84_987.0)
    assert load_calibration(path) == Calibration(-150_123.5, 84_987.0)
    save_calibration(path, 12.0, None)  # replaces the old file
    assert load_calibration(path) == Calibration(12.0, None)
    assert sorted(p.name for p in path.parent.iterdir()) == ["strap.json"]  # no temp left
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize(
    "text", ["{not json", "[]", '{"offset": "x"}', '{"offset": 1, "scale": 0}', "{}",
             # issue 22: files that look valid but mean nothing physical
             '{"offset": NaN, "scale": 85000}', '{"offset": 1, "scale": NaN}',
             '{"offset": 1, "scale": Infinity}', '{"offset": -Infinity}',
             '{"offset": 1e308, "scale": 85000}', '{"offset": 1, "scale": 630800000}',
             '{"offset": 1, "scale": 1e-9}']
)
def test_malformed_calibration_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "strap.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="strap.json"):
        load_calibration(path)


# --- drivers know nothing of the product -------------------------------------------------


def imported_modules(source: str) -> set[str]:
    """Every module a Python source imports (absolute names; relative ones kept dotted)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
    return found


def test_import_finder_sees_every_form() -> None:
    source = ("import device\nimport os, device.box.clock as c\n"
              "def f():\n    from device.box.clock import Clock\n"
              "from .. import device\n")
    assert imported_modules(source) == {"device", "os", "device.box.clock", ".."}


def test_drivers_import_nothing_from_device() -> None:
    files = sorted(DRIVERS.glob("*.py"))
    assert len(files) >= 5  # the folder was found
    offenders = {
        f"{path.name}: {name}"
        for path in files
        for name in imported_modules(path.read_text(encoding="utf-8"))
        if name == "device" or name.startswith(("device.", ".."))  # ..: above drivers/
    }
    assert offenders == set()
