"""The systemd drop-in that opens the network for MQTT, and only as far as it needs.

The unit keeps the network closed (``PrivateNetwork=yes``, ``IPAddressDeny=any``,
``RestrictAddressFamilies=AF_UNIX``). With ``[mqtt] url`` set, the installer
(scripts/mqtt-dropin.sh) writes this drop-in: the host's network, Internet sockets, and
IP traffic only to the broker's addresses (resolved now), the name servers (when the
broker is a name) and localhost. ``python -m device.addons.mqtt_unit [--config FILE]`` prints
it, or nothing when MQTT is off; a bad config exits 78 with one line.
"""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from device.addons.mqtt import parse_url
from device.core.config import Config, load_config
from device.core.errors import ConfigError

DROPIN_NAME = "mqtt.conf"
Resolver = Callable[[str, int], list[str]]


def _resolve(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return []
    return sorted({str(info[4][0]) for info in infos})


def name_servers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The ``nameserver`` addresses of resolv.conf (127.0.0.53 for systemd-resolved)."""
    try:
        lines = resolv_conf.read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                out.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
            except ValueError:
                continue
    return out


def dropin_text(config: Config, resolve: Resolver = _resolve,
                servers: Sequence[str] | None = None) -> str | None:
    """The drop-in for ``config``, or None when MQTT is off."""

    if not config.mqtt.url:
        return None
    host, port, _ = parse_url(config.mqtt.url)
    try:
        literal = [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        literal = []
    addresses = literal or resolve(host, port)
    dns = [] if literal else list(servers if servers is not None else name_servers())
    allow = []
    for address in [*addresses, *dns]:
        ip = ipaddress.ip_address(address)
        if not ip.is_loopback and address not in allow:
            allow.append(address)
    lines = [
        "# Written by scripts/mqtt-dropin.sh because [mqtt] url is set: the service may",
        f"# reach the broker {config.mqtt.url} (and the name servers to find it), nothing",
        "# else. Run the script again after changing the url or the broker's address.",
        "[Service]",
        "PrivateNetwork=no",
        "RestrictAddressFamilies=",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "IPAddressDeny=any",
        "IPAddressAllow=localhost",
    ]
    if not addresses:
        lines.insert(4, f"# {host} did not resolve now: only localhost is allowed")
    lines += [f"IPAddressAllow={a}" for a in allow]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m device.addons.mqtt_unit",
                                     description="print the systemd drop-in MQTT needs")
    parser.add_argument("--config", metavar="FILE", help="config file (TOML)")
    args = parser.parse_args(argv)
    try:
        text = dropin_text(load_config(args.config))
    except ConfigError as exc:
        print(f"stretch-companion: {exc}", file=sys.stderr)
        return exc.exit_code
    if text:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
