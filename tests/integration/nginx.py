"""A real nginx for the tests: Debian's binary (`make nginx`), run in the foreground as the current
user, with everything it writes (pid, logs, temp files) in a folder of the test, in front of the
services with `infra/nginx/mfa.conf` filled in, and a self-signed certificate made here.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import pwd
import shutil
import signal
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from string import Template

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

NGINX = Path(shutil.which("nginx") or "/usr/sbin/nginx")
TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "nginx" / "mfa.conf"
# Only the template's own placeholders: nginx's $variables ($host, $http_upgrade) stay as they are.
PLACEHOLDERS = ("MFA_SERVER_NAME", "MFA_LISTEN", "MFA_TLS_CERTIFICATE", "MFA_TLS_CERTIFICATE_KEY",
                "MFA_API_1", "MFA_API_2", "MFA_NOTIFIER_1", "MFA_NOTIFIER_2")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for `host` (an IP address or a name), signed by its own key; valid a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        alt = x509.DNSName(host)
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "mfa.crt", folder / "mfa.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


def client_ssl_context(certificate: Path) -> ssl.SSLContext:
    """What a browser that trusts the certificate does: verify the chain and the host name."""
    return ssl.create_default_context(cafile=str(certificate))


def render_site(values: dict[str, str]) -> str:
    missing = set(PLACEHOLDERS) - set(values)
    assert not missing, missing
    site = Template(TEMPLATE.read_text()).safe_substitute(values)
    left = [line for line in site.splitlines()
            if "${MFA_" in line and not line.lstrip().startswith("#")]
    assert not left, f"placeholders of the template left unfilled: {left}"
    return site


@dataclass
class Nginx:
    folder: Path
    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def access_log(self) -> Path:
        return self.folder / "access.log"

    @property
    def error_log(self) -> Path:
        return self.folder / "error.log"

    def write_config(self, site: str) -> Path:
        """The main config around the site: no daemon, files in the test's folder; as root,
        workers stay root too (the folder is the test's, not nginx's www-data)."""
        (self.folder / "mfa.conf").write_text(site)
        for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.folder / temp).mkdir(exist_ok=True)
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        config = self.folder / "nginx.conf"
        config.write_text(f"""
daemon off;
{user}
worker_processes 1;
pid {self.folder}/nginx.pid;
error_log {self.error_log} notice;
events {{ worker_connections 256; }}
http {{
    log_format upstream '$remote_addr "$request" $status upstream=$upstream_addr';
    access_log {self.access_log} upstream;
    client_body_temp_path {self.folder}/client_body;
    proxy_temp_path {self.folder}/proxy;
    fastcgi_temp_path {self.folder}/fastcgi;
    uwsgi_temp_path {self.folder}/uwsgi;
    scgi_temp_path {self.folder}/scgi;
    include {self.folder}/mfa.conf;
}}
""")
        return config

    async def start(self, site: str) -> None:
        config = self.write_config(site)
        test = await asyncio.create_subprocess_exec(
            str(NGINX), "-t", "-q", "-e", str(self.error_log), "-p", str(self.folder),
            "-c", str(config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await test.communicate()
        assert test.returncode == 0, f"nginx -t: {output.decode()}"
        self.process = await asyncio.create_subprocess_exec(
            str(NGINX), "-e", str(self.error_log), "-p", str(self.folder), "-c", str(config),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # fast shutdown of the master and its worker
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def upstreams(self, path_prefix: str, status: str = "") -> list[str]:
        """The upstream address of each logged request whose path starts with `path_prefix` (and
        whose status is `status`, if given), in log order."""
        found: list[str] = []
        for line in self.access_log.read_text().splitlines():
            # 127.0.0.2 "GET /ws HTTP/1.1" 101 upstream=127.0.0.1:41234
            _, request, rest = line.split('"', 2)
            code, upstream = rest.split(" upstream=")
            path = request.split()[1] if len(request.split()) > 1 else ""
            if path.startswith(path_prefix) and status in ("", code.strip()):
                found.extend(address.strip() for address in upstream.split(","))
        return found
