"""TLS: a pool whose scheduler, workers and client all speak HTTPS/WSS with a private CA."""

from __future__ import annotations

import shutil
import ssl
from pathlib import Path

import aiohttp
import pytest
from certs import make_certs
from memkube import Client
from memkube.memory import MemoryConfig
from memkube.scheduler import Scheduler
from memkube.security import Auth, TLSConfig, new_token
from memkube.worker import Worker

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None,
                                reason="the openssl command is needed to make test certificates")


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
                # a large result comes straight from the worker, over TLS (memkube.bulk)
                big = await client.submit(bytes.upper, b"y" * (8 << 20)).result()
                assert big == b"Y" * (8 << 20)
                assert client.routes.direct_bytes >= 8 << 20
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
                # trusting the CA is not enough: peers must present a certificate from it
                trusting = ssl.create_default_context(cafile=tls.ca)
                with pytest.raises(aiohttp.ClientError):
                    async with session.get(url + "/health", ssl=trusting) as resp:
                        await resp.read()
                trusting.load_cert_chain(tls.cert, tls.key)
                async with session.get(url + "/health", ssl=trusting) as resp:
                    assert resp.status == 200


def test_a_ca_makes_the_server_require_client_certificates(tmp_path: Path) -> None:
    tls = make_certs(tmp_path)
    ctx = tls.server_context()
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED
    without_ca = TLSConfig(cert=tls.cert, key=tls.key).server_context()
    assert without_ca is not None and without_ca.verify_mode == ssl.CERT_NONE
