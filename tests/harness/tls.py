"""A throwaway CA with server and client certificates, made with openssl, for TLS tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


def _run(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@dataclass(frozen=True)
class Certs:
    dir: Path

    def path(self, name: str) -> str:
        return str(self.dir / name)


def make_ca(dir: Path, name: str) -> None:
    _run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}-key.pem",
        "-out",
        f"{name}.pem",
        cwd=dir,
    )


def make_cert(dir: Path, ca: str, name: str, ext: str) -> None:
    _run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        f"/CN={name}",
        "-keyout",
        f"{name}-key.pem",
        "-out",
        f"{name}.csr",
        cwd=dir,
    )
    (dir / f"{name}.ext").write_text(ext)
    _run(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.pem",
        "-CAkey",
        f"{ca}-key.pem",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.pem",
        cwd=dir,
    )


def make_certs(dir: Path) -> Certs:
    """ca.pem signs server.pem (127.0.0.1, localhost) and client.pem; other-ca.pem signs nothing we use."""
    dir.mkdir(parents=True, exist_ok=True)
    make_ca(dir, "ca")
    make_ca(dir, "other-ca")
    make_cert(dir, "ca", "server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    make_cert(dir, "ca", "client", "extendedKeyUsage=clientAuth\n")
    # The layout DOCKER_CERT_PATH and the context store expect.
    cert_path = dir / "certpath"
    cert_path.mkdir()
    for src, dst in [("ca.pem", "ca.pem"), ("client.pem", "cert.pem"), ("client-key.pem", "key.pem")]:
        (cert_path / dst).write_bytes((dir / src).read_bytes())
    return Certs(dir)
