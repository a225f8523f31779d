"""The official kubernetes Python client, configured from the double's kubeconfig."""

from __future__ import annotations

import pytest
from apidouble import ApiDouble
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException


@pytest.fixture
def k8s(threaded_api: ApiDouble) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(threaded_api.kubeconfig_path))


def test_typed_crud_and_errors(threaded_api: ApiDouble, k8s: client.ApiClient) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="team")))
    made = core.create_namespaced_config_map("team", client.V1ConfigMap(
        metadata=client.V1ObjectMeta(name="cfg", labels={"a": "b"}), data={"k": "v"}))
    assert made.metadata.uid and made.metadata.resource_version
    listed = core.list_namespaced_config_map("team", label_selector="a=b")
    assert [c.metadata.name for c in listed.items] == ["cfg"]
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map("team", client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="cfg")))
    assert caught.value.status == 409
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_secret("missing", "team")
    assert caught.value.status == 404
    core.patch_namespaced_config_map("cfg", "team", {"data": {"k": "w"}})
    assert core.read_namespaced_config_map("cfg", "team").data == {"k": "w"}


def test_custom_objects_and_watch_from_resource_version(
        threaded_api: ApiDouble, k8s: client.ApiClient, widgets_crd: dict[str, object]) -> None:
    threaded_api.create_object(widgets_crd)
    custom = client.CustomObjectsApi(k8s)
    body = {"apiVersion": "example.test/v1", "kind": "Widget",
            "metadata": {"name": "w"}, "spec": {"size": "1Gi"}}
    created = custom.create_namespaced_custom_object("example.test", "v1", "default",
                                                     "widgets", body)
    assert created["spec"]["replicas"] == 1  # defaulted by the schema
    listed = custom.list_namespaced_custom_object("example.test", "v1", "default", "widgets")
    rv = listed["metadata"]["resourceVersion"]
    custom.patch_namespaced_custom_object_status(
        "example.test", "v1", "default", "widgets", "w", {"status": {"replicas": 1}})
    custom.patch_namespaced_custom_object_scale(
        "example.test", "v1", "default", "widgets", "w", {"spec": {"replicas": 2}})
    stream = watch.Watch().stream(custom.list_namespaced_custom_object, "example.test", "v1",
                                  "default", "widgets", resource_version=rv,
                                  timeout_seconds=2)
    seen = []
    for event in stream:
        seen.append((event["type"], event["object"].get("status"),
                     event["object"]["spec"]["replicas"]))
        if len(seen) == 2:
            break
    assert seen == [("MODIFIED", {"replicas": 1}, 1), ("MODIFIED", {"replicas": 1}, 2)]
