"""The MQTT systemd drop-in: what it opens, and the unit's score with it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from device.addons.mqtt_unit import dropin_text, name_servers
from device.core.config import Config, with_overrides
from tests.test_systemd import MAX_EXPOSURE, UNIT, _run, _systemd_analyze
from tests.tools import need

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "mqtt-dropin.sh"


def mqtt(url: str) -> Config:
    return with_overrides(Config(), mqtt={"url": url})


def test_no_dropin_when_mqtt_is_off() -> None:
    assert dropin_text(Config()) is None


def test_dropin_allows_the_broker_and_its_name_servers_only() -> None:
    text = dropin_text(mqtt("mqtts://broker.lan:8883"),
                       resolve=lambda host, port: ["192.168.1.10", "fd00::10"],
                       servers=["192.168.1.1", "127.0.0.53"])
    assert text is not None
    allowed = re.findall(r"^IPAddressAllow=(.*)$", text, re.M)
    assert allowed == ["localhost", "192.168.1.10", "fd00::10", "192.168.1.1"]
    assert "PrivateNetwork=no" in text and "IPAddressDeny=any" in text
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6" in text


def test_dropin_for_an_address_needs_no_name_server() -> None:
    text = dropin_text(mqtt("mqtt://10.0.0.5:1883"), resolve=lambda h, p: ["9.9.9.9"],
                       servers=["192.168.1.1"])
    assert text is not None
    assert re.findall(r"^IPAddressAllow=(.*)$", text, re.M) == ["localhost", "10.0.0.5"]


def test_name_servers(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nnameserver 192.168.1.1\nnameserver fe80::1%eth0\nnameserver bad\n"
                    "search lan\n")
    assert name_servers(conf) == ["192.168.1.1", "fe80::1"]


def test_module_prints_nothing_when_off_and_exits_78_on_a_bad_config(tmp_path: Path) -> None:
    good = tmp_path / "ok.toml"
    good.write_text("")
    r = subprocess.run([sys.executable, "-m", "device.addons.mqtt_unit", "--config", str(good)],
                       capture_output=True, text=True, cwd=ROOT)
    assert (r.returncode, r.stdout) == (0, "")
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nurl = "mqtt://broker.example:1883"\nusername = "box"\n')
    r = subprocess.run([sys.executable, "-m", "device.addons.mqtt_unit", "--config", str(bad)],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 78 and "unencrypted" in r.stderr and r.stderr.count("\n") == 1


def test_security_exposure_with_the_mqtt_dropin_at_most_2(tmp_path: Path) -> None:
    analyze = _systemd_analyze()
    need(analyze is not None, "systemd-analyze", "apt-get install systemd")
    system = tmp_path / "etc" / "systemd" / "system"
    (system / f"{UNIT.name}.d").mkdir(parents=True)
    shutil.copy(UNIT, system / UNIT.name)
    text = dropin_text(mqtt("mqtts://broker.lan:8883"),
                       resolve=lambda host, port: ["192.168.1.10"], servers=["192.168.1.1"])
    assert text is not None
    (system / f"{UNIT.name}.d" / "mqtt.conf").write_text(text)
    web = (ROOT / "systemd" / "web.conf").read_text().replace("@PORT@", "8321")
    (system / f"{UNIT.name}.d" / "web.conf").write_text(web)  # the phone page on too
    result = _run(analyze or "", "security", "--no-pager", "--offline=yes",
                  f"--root={tmp_path}", UNIT.name)
    assert result.returncode == 0, result.stderr
    assert "Service has access to the host's network" in result.stdout  # the drop-in counted
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert m and float(m.group(1)) <= MAX_EXPOSURE, result.stdout[-3000:]


def test_dropin_script_passes_shellcheck() -> None:
    need(shutil.which("shellcheck") is not None, "shellcheck", "apt-get install shellcheck")
    r = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_dropin_script_writes_and_removes_the_file(tmp_path: Path) -> None:
    """The script's function against a fake venv and config, with the unit folder moved
    into tmp_path."""
    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (venv / "python").chmod(0o755)
    conf = tmp_path / "config.toml"
    conf.write_text('[mqtt]\nurl = "mqtt://10.1.2.3:1883"\n')
    dropin_dir = tmp_path / "unit.d"
    body = SCRIPT.read_text().replace("/etc/systemd/system/$MQTT_APP.service.d",
                                      str(dropin_dir))
    script = tmp_path / "dropin.sh"
    script.write_text(body)
    run = f'VENV={venv.parent} CONF={conf}; . {script}; mqtt_dropin'
    r = subprocess.run(["bash", "-c", run], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    written = (dropin_dir / "mqtt.conf").read_text()
    assert "IPAddressAllow=10.1.2.3" in written
    conf.write_text("")
    r = subprocess.run(["bash", "-c", run], capture_output=True, text=True, cwd=ROOT,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0 and not dropin_dir.exists()
