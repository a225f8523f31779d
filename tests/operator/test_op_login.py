"""The operator's default login with a kubeconfig whose user is an ``exec`` credential
plugin (as cloud providers' kubeconfigs are): the plugin runs, its token is used against the
real API server, and the event loop keeps running while the plugin does."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import kubernetes
import pytest
import yaml
from memkube_operator.handlers import default_login
from memkube_operator.kube import PODS, KubeApi
from opharness import ClusterApi, LoopTicks

SLOW = 1.0  # seconds the plugin takes, as a credential helper fetching a token would


def service_account_token(api: ClusterApi) -> str:
    """A token of a ServiceAccount allowed to read pods in the test's namespace."""
    api.create_object(
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "reader"}}
    )
    api.create_object(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "view",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": api.ns}],
        }
    )
    result = api.request(
        "POST",
        f"/api/v1/namespaces/{api.ns}/serviceaccounts/reader/token",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
    )
    token: str = result["status"]["token"]
    return token


def exec_kubeconfig(api: ClusterApi, tmp_path: Path, token: str) -> tuple[Path, Path]:
    """A kubeconfig whose user is an exec plugin that sleeps, logs its run and prints the
    token as an ExecCredential."""
    ran = tmp_path / "plugin-ran"
    plugin = tmp_path / "credential-helper"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    plugin.write_text(
        f"#!/bin/sh\nsleep {SLOW}\necho run >> {ran}\ncat <<'END'\n{json.dumps(credential)}\nEND\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "local",
                "cluster": {"server": api.url, "certificate-authority": str(api.plane.pki.ca.cert)},
            }
        ],
        "users": [
            {
                "name": "helper",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": str(plugin),
                        "interactiveMode": "Never",
                    }
                },
            }
        ],
        "contexts": [
            {
                "name": "local",
                "context": {"cluster": "local", "user": "helper", "namespace": api.ns},
            }
        ],
        "current-context": "local",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path, ran


async def test_an_exec_plugin_login_works_and_never_blocks_the_loop(
    api: ClusterApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, ran = exec_kubeconfig(api, tmp_path, service_account_token(api))
    # The kubernetes library reads $KUBECONFIG once, at import: point its default there.
    monkeypatch.setenv("KUBECONFIG", str(path))
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(path))
    client = KubeApi(default_login)
    try:
        async with LoopTicks() as loop:
            assert await client.get(PODS, api.ns, "absent") is None  # authorized as the reader
            assert await client.list(PODS, api.ns, "memkube.dev/pool=x") == []
    finally:
        await client.close()
    assert ran.read_text().count("run") >= 1  # the plugin really ran
    assert loop.ticks >= 10, loop.ticks  # the loop kept ticking while it slept
