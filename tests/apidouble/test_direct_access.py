"""Direct access from tests: create/get/patch/delete without HTTP, and waiting on changes."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import yaml
from apidouble import ApiDouble


async def test_direct_writes_follow_the_same_rules_and_are_not_logged(api: ApiDouble) -> None:
    created = api.create_object({"apiVersion": "v1", "kind": "ConfigMap",
                                 "metadata": {"name": "direct"}})
    assert created["metadata"]["namespace"] == "default" and created["metadata"]["uid"]
    assert api.get_object("", "v1", "configmaps", "default", "direct") == created
    patched = api.patch_object("", "v1", "configmaps", "default", "direct",
                               {"data": {"a": "b"}})
    assert patched["data"] == {"a": "b"}
    assert [o["metadata"]["name"] for o in api.objects("", "v1", "configmaps")] == ["direct"]
    api.delete_object("", "v1", "configmaps", "default", "direct")
    assert api.get_object("", "v1", "configmaps", "default", "direct") is None
    assert len(api.requests) == 0


async def test_apply_manifests_creates_crds_first(api: ApiDouble,
                                                  widgets_crd: dict[str, Any]) -> None:
    text = yaml.safe_dump_all([
        {"apiVersion": "example.test/v1", "kind": "Widget", "metadata": {"name": "w"},
         "spec": {"size": "1Gi"}}, widgets_crd])
    made = api.apply_manifests(text)
    assert [m["kind"] for m in made] == ["CustomResourceDefinition", "Widget"]


async def test_wait_for_is_woken_by_changes(api: ApiDouble) -> None:
    # Runs once wait_for has checked and started waiting.
    asyncio.get_running_loop().call_soon(api.create_object, {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "soon"}})
    found = await api.wait_for("", "v1", "configmaps", "default", "soon",
                               lambda o: o is not None, timeout=5)
    assert found is not None and found["metadata"]["name"] == "soon"
    with pytest.raises(TimeoutError):
        await api.wait_for("", "v1", "configmaps", "default", "never",
                           lambda o: o is not None, timeout=0.1)


def test_wait_for_sync_across_threads(threaded_api: ApiDouble) -> None:
    made = threading.Event()

    def writer() -> None:
        made.wait(5)
        threaded_api.create_object({"apiVersion": "v1", "kind": "Secret",
                                    "metadata": {"name": "s", "namespace": "kube-system"}})

    thread = threading.Thread(target=writer)
    thread.start()
    made.set()
    found = threaded_api.wait_for_sync("", "v1", "secrets", "kube-system", "s",
                                       lambda o: o is not None, timeout=5)
    thread.join()
    assert found is not None
    with pytest.raises(TimeoutError):
        threaded_api.wait_for_sync("", "v1", "secrets", "kube-system", "never",
                                   lambda o: o is not None, timeout=0.1)
