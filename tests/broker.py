"""A real Mosquitto for tests and the fleet bench, on free loopback ports, with a config,
password file, ACL and TLS certificates written at start.

Listeners: ``port`` (anonymous), ``auth_port`` (password file + ACL: each box may only
write under ``stretch-companion/<its user name>/`` and its own discovery topics),
``tls_port`` (anonymous, TLS with a CA made here). ``persistence`` keeps the studio's
persistent session across a (graceful) restart.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
PASSWD = shutil.which("mosquitto_passwd") or (
    "/usr/bin/mosquitto_passwd" if os.access("/usr/bin/mosquitto_passwd", os.X_OK) else None)
INSTALL = "sudo apt-get install mosquitto"

ACL = """\
# each box writes only under its own base and its own discovery topics
pattern readwrite stretch-companion/%u/#
pattern write homeassistant/+/stretch_companion_%u/+/config
pattern read homeassistant/status
user studio
topic read stretch-companion/#
topic read homeassistant/#
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout_s: float = 5.0) -> None:
    """Until something accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.02)


def make_certs(folder: Path, name: str = "ca") -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1/localhost signed by it (PEM files)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def pem_key(k: ec.EllipticCurvePrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM,
                               serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.NoEncryption())

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"test {name}")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    srv_key = key()
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number())
           .not_valid_before(now - dt.timedelta(minutes=5))
           .not_valid_after(now + dt.timedelta(days=2))
           .add_extension(x509.SubjectAlternativeName([
               x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
               critical=False)
           .sign(ca_key, hashes.SHA256()))
    paths = {"ca": folder / f"{name}.crt", "cert": folder / f"{name}-server.crt",
             "key": folder / f"{name}-server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(pem_key(srv_key))
    return paths


class Mosquitto:
    """One broker process; ``start``/``stop``/``restart``/``pause``/``resume``."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None,
                 tls: bool = True) -> None:
        if MOSQUITTO is None:
            raise RuntimeError(f"mosquitto is not installed ({INSTALL})")
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.auth_port = free_port()
        self.tls_port = free_port() if tls else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = folder / "mosquitto.log"
        lines = [
            "per_listener_settings true",
            # as root mosquitto would switch to the "mosquitto" user and lose the files here
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "persistence true",
            f"persistence_location {folder}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            f"log_dest file {self.log}",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "connection_messages true",
            f"listener {self.port} 127.0.0.1", "allow_anonymous true",
        ]
        users = {"studio": "studio-pw", **(users or {})}
        pw = folder / "passwd"
        pw.write_text("".join(f"{u}:{p}\n" for u, p in users.items()))
        if PASSWD is None:
            raise RuntimeError(f"mosquitto_passwd is not installed ({INSTALL})")
        subprocess.run([PASSWD, "-U", str(pw)], check=True, capture_output=True)
        os.chmod(pw, 0o600)
        acl = folder / "acl"
        acl.write_text(ACL)
        os.chmod(acl, 0o600)
        lines += [f"listener {self.auth_port} 127.0.0.1", "allow_anonymous false",
                  f"password_file {pw}", f"acl_file {acl}"]
        if tls:
            self.certs = make_certs(folder / "tls")
            lines += [f"listener {self.tls_port} 127.0.0.1", "allow_anonymous true",
                      f"cafile {self.certs['ca']}", f"certfile {self.certs['cert']}",
                      f"keyfile {self.certs['key']}"]
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for port in (self.port, self.auth_port, self.tls_port):
                if port is not None:
                    wait_port(port)
        except TimeoutError:
            self.proc.kill()
            err = self.proc.communicate()[1].decode(errors="replace")
            raise RuntimeError(f"mosquitto did not start: {err} {self.log_text()}") from None
        return self

    def stop(self) -> None:
        """Graceful stop (the persistence file is written)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
