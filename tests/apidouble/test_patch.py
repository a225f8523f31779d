"""PATCH in its formats: merge, JSON patch, strategic merge, apply."""

from __future__ import annotations

from apidouble.testing import Http

PODS = "/api/v1/namespaces/default/pods"
POD = {"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}, "finalizers": ["x/one"]},
       "spec": {"containers": [
           {"name": "main", "image": "img:1", "env": [{"name": "A", "value": "1"}]},
           {"name": "side", "image": "side:1"}]}}
# Pod specs are immutable, so list patches are shown on a Deployment's pod template.
DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
DEPLOY = {"metadata": {"name": "d", "finalizers": ["x/one"]},
          "spec": {"selector": {"matchLabels": {"app": "d"}},
                   "template": {"metadata": {"labels": {"app": "d"}}, "spec": POD["spec"]}}}


async def test_merge_patch_sets_and_removes_keys(http: Http) -> None:
    await http.post(PODS, POD)
    status, pod = await http.patch(f"{PODS}/p", {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert status == 200 and pod["metadata"]["labels"] == {"b": "2", "c": "3"}
    # Lists are replaced whole by a merge patch.
    await http.post(DEPLOYS, DEPLOY)
    _, deploy = await http.patch(f"{DEPLOYS}/d", {"spec": {"template": {"spec": {
        "containers": [{"name": "main", "image": "img:2"}]}}}})
    assert [c["name"] for c in deploy["spec"]["template"]["spec"]["containers"]] == ["main"]


async def test_json_patch_operations_and_failed_test(http: Http) -> None:
    await http.post(PODS, POD)
    ops = [{"op": "test", "path": "/metadata/labels/a", "value": "1"},
           {"op": "replace", "path": "/metadata/labels/a", "value": "9"},
           {"op": "add", "path": "/metadata/finalizers/-", "value": "x/two"},
           {"op": "remove", "path": "/metadata/labels/b"},
           {"op": "copy", "from": "/metadata/labels/a", "path": "/metadata/labels/c"},
           {"op": "move", "from": "/metadata/labels/c", "path": "/metadata/labels/d"}]
    status, pod = await http.patch(f"{PODS}/p", ops, kind="json")
    assert status == 200, pod
    assert pod["metadata"]["labels"] == {"a": "9", "d": "9"}
    assert pod["metadata"]["finalizers"] == ["x/one", "x/two"]
    status, body = await http.patch(
        f"{PODS}/p", [{"op": "test", "path": "/metadata/labels/a", "value": "1"}], kind="json")
    assert status == 422 and body["kind"] == "Status"
    status, _ = await http.patch(
        f"{PODS}/p", [{"op": "remove", "path": "/metadata/nothing"}], kind="json")
    assert status == 422


async def test_strategic_merge_merges_lists_by_key(http: Http) -> None:
    await http.post(DEPLOYS, DEPLOY)
    patch = {"metadata": {"finalizers": ["x/two"]},
             "spec": {"template": {"spec": {"containers": [
                 {"name": "main", "image": "img:2", "env": [{"name": "B", "value": "2"}]},
                 {"name": "side", "$patch": "delete"},
                 {"name": "new", "image": "new:1"}]}}}}
    status, deploy = await http.patch(f"{DEPLOYS}/d", patch, kind="strategic-merge")
    assert status == 200, deploy
    containers = {c["name"]: c for c in deploy["spec"]["template"]["spec"]["containers"]}
    assert list(containers) == ["main", "new"]
    assert containers["main"]["image"] == "img:2"
    assert containers["main"]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert deploy["metadata"]["finalizers"] == ["x/one", "x/two"]
    _, deploy = await http.patch(
        f"{DEPLOYS}/d", {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/one"]}},
        kind="strategic-merge")
    assert deploy["metadata"]["finalizers"] == ["x/two"]


async def test_strategic_merge_is_unsupported_for_custom_resources(
        http: Http, widgets: str) -> None:
    await http.post(widgets, {"metadata": {"name": "w"}, "spec": {"size": "1Gi"}})
    status, body = await http.patch(f"{widgets}/w", {"spec": {"replicas": 2}},
                                    kind="strategic-merge")
    assert status == 415 and body["reason"] == "UnsupportedMediaType"


async def test_resource_version_in_patch_is_a_precondition(http: Http) -> None:
    _, pod = await http.post(PODS, POD)
    rv = pod["metadata"]["resourceVersion"]
    status, _ = await http.patch(f"{PODS}/p", {"metadata": {"resourceVersion": rv,
                                                             "labels": {"z": "1"}}})
    assert status == 200
    status, body = await http.patch(f"{PODS}/p", {"metadata": {"resourceVersion": rv,
                                                                "labels": {"z": "2"}}})
    assert status == 409 and body["reason"] == "Conflict"


async def test_patch_of_missing_object_is_not_found(http: Http) -> None:
    status, body = await http.patch(f"{PODS}/nope", {"metadata": {"labels": {"a": "b"}}})
    assert status == 404 and body["reason"] == "NotFound"


async def test_apply_patch_creates_then_merges(http: Http) -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: '1'\n"
    path = "/api/v1/namespaces/default/configmaps/applied"
    status, cm = await http.request("PATCH", path, manifest,
                                    content_type="application/apply-patch+yaml",
                                    params={"fieldManager": "test"})
    assert status == 201 and cm["data"] == {"a": "1"}
    status, cm = await http.request("PATCH", path, manifest.replace("'1'", "'2'"),
                                    content_type="application/apply-patch+yaml",
                                    params={"fieldManager": "test"})
    assert status == 200 and cm["data"] == {"a": "2"}
