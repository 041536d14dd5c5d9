"""A real nginx on loopback in front of real relay processes, configured from
the shipped template (deploy/nginx/sealdrop-relay.conf): what the tests prove
is the file an operator installs, with only its @NAME@ placeholders filled in.

nginx runs in the foreground (``daemon off``), as a child of the test, with
its pid file, logs and temp folders in the test's folder, on a port from this
worker's block (``kit.free_port``). TLS is real: a throwaway certificate
authority and a server certificate for 127.0.0.1, made here with pyca
cryptography; clients trust the authority the way a clinic with its own CA
does (``sealdrop init --ca-file``).

The upstreams are a list of relay ports: one process today, several once the
relays share object storage.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .kit import Relay, User, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "nginx" / "sealdrop-relay.conf"
PLACEHOLDER = re.compile(r"@([A-Z_]+)@")


def nginx_binary() -> str:
    """nginx's path; a missing nginx fails the test (CI installs it: .ci/run)."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                      else None)
    if found is None:
        raise AssertionError("nginx is not installed (Debian package nginx; .ci/run installs it)")
    return found


def render(template: str, values: Mapping[str, str]) -> str:
    """``template`` with every ``@NAME@`` replaced; refuses a placeholder without
    a value and a value without a placeholder, so a renamed placeholder cannot
    leave the shipped file untested."""
    names = set(PLACEHOLDER.findall(template))
    if names != set(values):
        raise AssertionError(f"placeholders {sorted(names)} but values for {sorted(values)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


@dataclass(frozen=True)
class Tls:
    ca: Path  # the authority's certificate, PEM: what clients trust
    certificate: Path  # the server's chain, PEM
    key: Path


def make_tls(folder: Path, *, host: str = "127.0.0.1") -> Tls:
    """A throwaway CA and a server certificate for ``host`` (an IP address SAN)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sealdrop test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    tls = Tls(folder / "ca.pem", folder / "server.pem", folder / "server.key")
    tls.ca.write_bytes(ca.public_bytes(pem))
    tls.certificate.write_bytes(leaf.public_bytes(pem))
    tls.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    tls.key.chmod(0o600)
    return tls


def site_values(*, port: int, upstreams: Sequence[int], tls: Tls, access_log: Path
                ) -> dict[str, str]:
    """The placeholders' values for a proxy on 127.0.0.1:``port``."""
    return {
        "SERVER_NAME": "127.0.0.1",
        "LISTEN": f"127.0.0.1:{port}",
        "TLS_CERTIFICATE": str(tls.certificate),
        "TLS_CERTIFICATE_KEY": str(tls.key),
        "RELAY_SERVERS": " ".join(f"server 127.0.0.1:{p};" for p in upstreams),
        "ACCESS_LOG": str(access_log),
    }


def main_conf(folder: Path, site: Path) -> str:
    """The main context around the shipped http-context file: everything a
    Debian /etc/nginx/nginx.conf sets that the test must keep in its folder."""
    # As root the workers would run as nobody, who cannot enter pytest's 0700
    # folders: run them as the test's own user.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temps = "\n".join(f"    {kind}_temp_path {folder / (kind + '_temp')};"
                      for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return (f"{user}daemon off;\nworker_processes 1;\npid {folder / 'nginx.pid'};\n"
            f"error_log {folder / 'error.log'} info;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            "    default_type application/octet-stream;\n"
            f"{temps}\n"
            f"    include {site};\n"
            "}\n")


class Nginx:
    """nginx on 127.0.0.1:``port`` with TLS, balancing over ``upstreams`` (relay ports).

    ``edit`` changes the rendered site text before it is written (a test that
    proves a check can fail, e.g. with buffering turned back on)."""

    def __init__(self, folder: Path, upstreams: Sequence[int], *,
                 edit: Callable[[str], str] | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.tls = make_tls(folder / "tls")
        self.port = free_port()
        self.upstreams = list(upstreams)
        site = render(TEMPLATE.read_text("utf-8"), site_values(
            port=self.port, upstreams=self.upstreams, tls=self.tls,
            access_log=folder / "access.log"))
        self.site = folder / "sealdrop-relay.conf"
        self.site.write_text(edit(site) if edit else site)
        self.conf = folder / "nginx.conf"
        self.conf.write_text(main_conf(folder, self.site))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def command(self, *args: str) -> list[str]:
        # -e: the error log before the configuration is read (Debian's default
        # is stderr, but another build's could be a root-only file).
        return [nginx_binary(), "-p", str(self.folder), "-c", str(self.conf),
                "-e", str(self.folder / "error.log"), *args]

    def check(self) -> subprocess.CompletedProcess[str]:
        """``nginx -t`` on this configuration."""
        return subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=60)

    def start(self) -> None:
        with (self.folder / "stderr.log").open("ab") as err:
            self.proc = subprocess.Popen(self.command(), stdout=err, stderr=err)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited:\n" + self.log())
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, 60, "nginx to listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # fast shutdown; SIGQUIT waits for clients
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)

    def log(self) -> str:
        return "".join(p.read_text(errors="replace") for p in
                       (self.folder / "error.log", self.folder / "stderr.log") if p.exists())

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.tls.ca))


class FrontedUser(User):
    """A ``kit.User`` whose profile names the proxy's https URL and trusts its CA."""

    def __init__(self, root: Path, handle: str, relay: Relay, front: Nginx) -> None:
        super().__init__(root, handle, relay)
        self.front = front

    def init(self) -> dict[str, Any]:
        return dict(self.json("init", "--relay", self.front.url, "--handle", self.handle,
                              "--invite", self.relay.invite(), "--work-factor", "10",
                              "--ca-file", str(self.front.tls.ca)))

