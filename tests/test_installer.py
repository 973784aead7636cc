"""The Pi installer's functions, sourced into bash with the system commands stubbed.

The whole installer runs for real (as root, under systemd) in scripts/system-test.sh;
these check single decisions on any machine: who created the user, the sensor setting
read as TOML, the config directory's mode, --mock.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools import need

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "scripts" / "install-pi.sh"

STUBS = r"""
set -euo pipefail
source "$INSTALLER"
T=$TESTDIR
PREFIX=$T/opt; VENV=$PREFIX/venv; CREATED=$PREFIX/installer-created
CONF_DIR=$T/etc; CONF=$CONF_DIR/config.toml; STATE_DIR=$T/state; CACHE_DIR=$T/cache
UNIT_DEST=$T/unit.service
call() { echo "$*" >>"$T/calls"; }
id() { [[ -e $T/user-exists ]]; }
getent() { [[ $2 != stretch || -e $T/group-exists ]]; }
useradd() { call useradd "$@"; touch "$T/user-exists"; }
userdel() { call userdel "$@"; rm -f "$T/user-exists"; }
usermod() { call usermod "$@"; }
groupadd() { call groupadd "$@"; [[ $2 != stretch ]] || touch "$T/group-exists"; }
groupdel() { call groupdel "$@"; rm -f "$T/group-exists"; }
systemctl() { call systemctl "$@"; return 1; }
have_systemd() { return 1; }
apt-get() { call apt-get "$@"; }
dpkg-query() { [[ $3 != python3-lgpio ]] && echo 'install ok installed'; }
apt-cache() { echo "$2:"; echo "  Candidate: (none)"; }
"""


def bash(tmp_path: Path, script: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, INSTALLER=str(INSTALLER), TESTDIR=str(tmp_path),
               PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    return subprocess.run(["bash", "-c", STUBS + script], capture_output=True, text=True,
                          env=env, timeout=60)


def calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls"
    return path.read_text().splitlines() if path.exists() else []


def test_sourcing_the_installer_runs_nothing(tmp_path: Path) -> None:
    result = bash(tmp_path, "echo sourced")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "sourced\n" and calls(tmp_path) == []


def test_uninstall_keeps_a_user_that_was_there_before(tmp_path: Path) -> None:
    (tmp_path / "user-exists").touch()
    (tmp_path / "group-exists").touch()
    result = bash(tmp_path, "create_user; do_uninstall no")
    assert result.returncode == 0, result.stderr
    assert not any(c.startswith(("useradd", "userdel", "groupdel")) for c in calls(tmp_path))
    assert (tmp_path / "user-exists").exists()
    assert "keeping user stretch (it was there before the install)" in result.stdout


def test_uninstall_removes_the_user_it_created_even_after_a_rerun(tmp_path: Path) -> None:
    result = bash(tmp_path, "create_user; create_user; do_uninstall no")
    assert result.returncode == 0, result.stderr
    made = calls(tmp_path)
    assert sum(c.startswith("useradd") for c in made) == 1
    assert "userdel stretch" in made and "groupdel stretch" in made
    assert not (tmp_path / "user-exists").exists()
    assert not (tmp_path / "opt").exists()  # the record went with the venv directory


@pytest.mark.parametrize(("toml", "on"), [
    ("[sensor]\nenabled = true\n", True),
    ("sensor.enabled = true\n", True),
    ("sensor = {enabled = true}\n", True),
    ("[ sensor ]\nenabled=true # fitted\n", True),
    ('[pins]\nfactory = "mock"\n\n[sensor]\ni2c_bus = 1\n"enabled" = true\n', True),
    ("[sensor]\nenabled = false\n", False),
    ("[voice]\nenabled = true\n", False),
    ("# [sensor]\n# enabled = true\n", False),
    ('[sensor]\nenabled = "true"\n', False),
    ('[sensor]\nnote = """\nenabled = true\n"""\n', False),
])
def test_sensor_setting_is_read_as_toml(tmp_path: Path, toml: str, on: bool) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.toml").write_text(toml)
    result = bash(tmp_path, "if sensor_enabled; then echo on; else echo off; fi")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("on" if on else "off")


def test_a_config_that_is_not_toml_counts_as_off_with_a_warning(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "config.toml").write_text("[sensor\nenabled = true\n")
    result = bash(tmp_path, "if sensor_enabled; then echo on; else echo off; fi")
    assert result.stdout.strip() == "off"
    assert "not valid TOML" in result.stderr and "config --check" in result.stderr


def _stub_venv(tmp_path: Path) -> None:
    binary = tmp_path / "opt" / "venv" / "bin" / "stretch-companion"
    binary.parent.mkdir(parents=True)
    binary.write_text(f"#!/bin/sh\ncd {ROOT} && exec {sys.executable} -m device \"$@\"\n")
    binary.chmod(0o755)


def test_a_rerun_leaves_the_config_directory_mode_alone(tmp_path: Path) -> None:
    _stub_venv(tmp_path)
    result = bash(tmp_path, "write_config")  # first run: creates it 0755
    assert result.returncode == 0, result.stderr
    conf_dir = tmp_path / "etc"
    assert stat.S_IMODE(conf_dir.stat().st_mode) == 0o755
    conf_dir.chmod(0o750)  # the user's choice
    (conf_dir / "config.toml").write_text("[session]\nhold_seconds = 90\n")
    result = bash(tmp_path, "write_config")
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(conf_dir.stat().st_mode) == 0o750
    assert (conf_dir / "config.toml").read_text() == "[session]\nhold_seconds = 90\n"
    assert "keeping existing" in result.stdout


def test_mock_writes_a_config_with_mock_pins_and_no_sensor(tmp_path: Path) -> None:
    from device.core.config import load_config

    _stub_venv(tmp_path)
    result = bash(tmp_path, "MOCK=yes; write_config")
    assert result.returncode == 0, result.stderr
    config = load_config(tmp_path / "etc" / "config.toml")
    assert config.pins.factory == "mock" and config.sensor.enabled is False
    # a kept config without mock pins is said, not changed
    (tmp_path / "etc" / "config.toml").write_text("[session]\nrounds = 2\n")
    result = bash(tmp_path, "MOCK=yes; write_config")
    assert "does not set pins.factory" in result.stderr


def test_mock_skips_pi_only_packages_and_raspi_config(tmp_path: Path) -> None:
    result = bash(tmp_path, "MOCK=yes; install_packages; enable_i2c")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == []  # no apt-get at all: everything else is installed
    assert "--mock: not installing python3-lgpio" in result.stdout
    assert "--mock: leaving I2C and raspi-config alone" in result.stdout


def test_without_mock_an_absent_pi_package_is_skipped_and_said(tmp_path: Path) -> None:
    result = bash(tmp_path, "install_packages")
    assert result.returncode == 0, result.stderr
    assert calls(tmp_path) == ["apt-get update"]
    assert "python3-lgpio is not in this system's apt sources" in result.stderr


SYSTEM_TEST = ROOT / "scripts" / "system-test.sh"


def test_system_test_script_is_clean_shell() -> None:
    need(shutil.which("shellcheck") is not None, "shellcheck", "apt-get install shellcheck")
    result = subprocess.run(["shellcheck", str(SYSTEM_TEST)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout


def _unprivileged_run(script: Path, ci: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` as nobody when root (else as is) from a world-readable copy: the
    clone may sit in a private folder (mode 0700, as ``mktemp -d`` or a home makes) that
    nobody cannot read (bash would exit 126 before the script says a word)."""
    import shutil
    import tempfile

    as_user: list[str] = []
    if os.geteuid() == 0:  # drop to nobody to see what an unprivileged run does
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CI": ci}
    place = Path(tempfile.mkdtemp(prefix="system-test-"))
    try:
        place.chmod(0o755)
        (place / "scripts").mkdir(mode=0o755)
        copy = place / "scripts" / script.name
        shutil.copyfile(script, copy)
        copy.chmod(0o644)
        return subprocess.run([*as_user, "bash", str(copy)], capture_output=True,
                              text=True, env=env, timeout=60, cwd=place)
    finally:
        shutil.rmtree(place, ignore_errors=True)


@pytest.mark.parametrize(("ci", "code", "word"), [("", 0, "skipped"), ("true", 1, "FAILED")])
def test_system_test_without_root_skips_or_fails_under_ci(ci: str, code: int, word: str) -> None:
    result = _unprivileged_run(SYSTEM_TEST, ci)
    assert result.returncode == code, result.stdout + result.stderr
    said = result.stdout + result.stderr
    assert word in said and "needs root" in said


def test_system_test_check_passes_from_a_private_clone(tmp_path: Path) -> None:
    """A clone inside a 0700 folder (``make test`` as root from ``mktemp -d``)."""
    private = tmp_path / "private"
    (private / "scripts").mkdir(parents=True)
    private.chmod(0o700)
    script = private / "scripts" / "system-test.sh"
    script.write_bytes(SYSTEM_TEST.read_bytes())
    result = _unprivileged_run(script, "true")
    assert result.returncode == 1 and "needs root" in result.stdout + result.stderr


def test_system_test_takes_a_pi_architecture_and_refuses_others() -> None:
    bad = subprocess.run(["bash", str(SYSTEM_TEST), "--arch", "sparc"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "unknown --arch sparc (arm64, armhf or amd64)" in bad.stderr
    text = SYSTEM_TEST.read_text()
    # emulation relaxes only what it cannot do, in a drop-in of the test's own, and says so
    relaxed = text.split('RELAXED="[Service]\n', 1)[1].split('"', 1)[0].split()
    assert relaxed == ["PrivateNetwork=no", "PrivateIPC=no"]
    assert 'relaxes only: ' in text and "not proven under emulation" in text
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/system-test.sh $(if $(ARCH),--arch $(ARCH))" in makefile
    assert "make system-test ARCH=arm64" in (ROOT / ".ci" / "run").read_text()
