"""Test certificates: a private CA and a certificate for 127.0.0.1 signed by it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from memkube.security import TLSConfig


def make_certs(directory: Path) -> TLSConfig:
    """A CA and a certificate for 127.0.0.1 signed by it (openssl, as an operator would)."""
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=memkube-ca",
        "-keyout", "ca.key", "-out", "ca.pem")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "pool.key", "-out", "pool.csr")
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "pool.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "pool.pem")
    return TLSConfig(cert=str(directory / "pool.pem"), key=str(directory / "pool.key"),
                     ca=str(directory / "ca.pem"))
