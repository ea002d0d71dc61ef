"""A throw-away certificate authority with a server and a client certificate, made with the
``openssl`` command line tool."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TLSFiles", "make_tls_files"]


@dataclass(frozen=True)
class TLSFiles:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_tls_files(directory: Path, name: str = "ca") -> TLSFiles:
    """A CA named ``name`` and two certificates it signed: one for a server on 127.0.0.1 /
    localhost, one for a client. Everything is valid for two days."""
    if shutil.which("openssl") is None:
        raise FileNotFoundError("the openssl command line tool is needed to make test certs")
    d = directory / name
    d.mkdir(parents=True, exist_ok=True)
    ca = "req -x509 -newkey rsa:2048 -nodes -days 2 -sha256 -keyout ca.key -out ca.crt"
    # the extensions Python 3.13's strict verification (VERIFY_X509_STRICT) requires
    ca_ext = ["-addext", "basicConstraints=critical,CA:TRUE"]
    ca_ext += ["-addext", "keyUsage=critical,keyCertSign,cRLSign"]
    _openssl(*ca.split(), *ca_ext, "-subj", f"/CN=errands test {name}", cwd=d)
    leaf = "authorityKeyIdentifier=keyid,issuer\nbasicConstraints=critical,CA:FALSE\n"
    leaf += "keyUsage=critical,digitalSignature,keyEncipherment\n"
    (d / "server.ext").write_text(
        leaf + "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
    )
    (d / "client.ext").write_text(leaf + "extendedKeyUsage=clientAuth\n")
    for who in ("server", "client"):
        ext = ["-extfile", f"{who}.ext"]
        req = f"req -newkey rsa:2048 -nodes -sha256 -keyout {who}.key -out {who}.csr"
        _openssl(*req.split(), "-subj", f"/CN={who}", cwd=d)
        sign = f"x509 -req -in {who}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2"
        _openssl(*sign.split(), "-sha256", "-out", f"{who}.crt", *ext, cwd=d)
    return TLSFiles(
        ca_cert=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
    )
