"""TLS: a pool whose scheduler, workers and client all speak HTTPS/WSS with a private CA."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from pathlib import Path

import aiohttp
import pytest
from memkube import Client
from memkube.memory import MemoryConfig
from memkube.scheduler import Scheduler
from memkube.security import Auth, TLSConfig, new_token
from memkube.worker import Worker

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl command is needed to make test certificates")


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


async def test_pool_over_tls(tmp_path: Path) -> None:
    tls = make_certs(tmp_path)
    token = new_token()
    auth = Auth(token)
    async with Scheduler(port=0, auth=auth, tls=tls) as scheduler:
        assert scheduler.address.startswith("tls://127.0.0.1:")
        memory = MemoryConfig.from_options(limit="1GiB", spill_dir=str(tmp_path), env={})
        async with Worker(scheduler.address, name="w0", auth=auth, tls=tls,
                          memory=memory) as worker:
            assert worker.address.startswith("tls://")
            await scheduler.wait_for_workers(1, timeout=30)
            async with Client(scheduler.address, token=token, tls=tls,
                              asynchronous=True) as client:
                fut = client.submit(pow, 3, 4)
                assert await fut.result() == 81
                (data,) = await client.scatter([b"x" * 1000])
                assert len(await client.submit(bytes.upper, data).result()) == 1000
            # plain HTTP is refused; HTTPS without trusting the CA fails verification
            async with aiohttp.ClientSession() as session:
                url = scheduler.http_address
                assert url.startswith("https://")
                with pytest.raises(aiohttp.ClientError):
                    async with session.get(url.replace("https://", "http://") + "/health"):
                        pass
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    async with session.get(url + "/health"):
                        pass
                trusting = ssl.create_default_context(cafile=tls.ca)
                async with session.get(url + "/health", ssl=trusting) as resp:
                    assert resp.status == 200
