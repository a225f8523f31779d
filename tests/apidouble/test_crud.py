"""create / get / update conventions: stamping, names, conflicts, Status errors."""

from __future__ import annotations

import re

from apidouble import ApiDouble
from apidouble.testing import Http

CM = "/api/v1/namespaces/default/configmaps"


async def test_create_stamps_metadata(http: Http) -> None:
    status, cm = await http.post(CM, {"apiVersion": "v1", "kind": "ConfigMap",
                                      "metadata": {"name": "one"}, "data": {"a": "1"}})
    assert status == 201
    meta = cm["metadata"]
    assert re.fullmatch(r"[0-9a-f-]{36}", meta["uid"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["creationTimestamp"])
    assert int(meta["resourceVersion"]) > 0 and meta["namespace"] == "default"
    assert "generation" not in meta  # configmaps do not track generation
    status, got = await http.get(f"{CM}/one")
    assert status == 200 and got == cm


async def test_generate_name(http: Http) -> None:
    names = set()
    for _ in range(3):
        status, cm = await http.post(CM, {"metadata": {"generateName": "job-"}})
        assert status == 201
        assert re.fullmatch(r"job-[a-z0-9]{5}", cm["metadata"]["name"])
        assert cm["metadata"]["generateName"] == "job-"
        names.add(cm["metadata"]["name"])
    assert len(names) == 3


async def test_name_is_required_and_validated(http: Http) -> None:
    status, body = await http.post(CM, {"metadata": {}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.name"
    status, body = await http.post(CM, {"metadata": {"name": "Not_Valid"}})
    assert status == 422 and "RFC 1123" in body["message"]


async def test_already_exists_and_not_found_are_status_objects(http: Http) -> None:
    await http.post(CM, {"metadata": {"name": "dup"}})
    status, body = await http.post(CM, {"metadata": {"name": "dup"}})
    assert status == 409
    assert (body["kind"], body["status"], body["reason"]) == ("Status", "Failure",
                                                                "AlreadyExists")
    assert body["details"] == {"name": "dup", "kind": "configmaps"}
    assert body["message"] == 'configmaps "dup" already exists'
    status, body = await http.get(f"{CM}/missing")
    assert status == 404 and body["reason"] == "NotFound"
    assert body["message"] == 'configmaps "missing" not found'


async def test_create_in_missing_or_terminating_namespace(http: Http) -> None:
    status, body = await http.post("/api/v1/namespaces/nowhere/configmaps",
                                   {"metadata": {"name": "x"}})
    assert status == 404 and body["message"] == 'namespaces "nowhere" not found'
    await http.post("/api/v1/namespaces", {"metadata": {"name": "doomed"}})
    await http.post("/api/v1/namespaces/doomed/configmaps",
                    {"metadata": {"name": "held", "finalizers": ["test/hold"]}})
    await http.delete("/api/v1/namespaces/doomed")
    status, body = await http.post("/api/v1/namespaces/doomed/configmaps",
                                   {"metadata": {"name": "late"}})
    assert status == 403 and body["reason"] == "Forbidden"


async def test_namespace_mismatch_and_kind_mismatch_are_bad_requests(http: Http) -> None:
    status, _ = await http.post(CM, {"metadata": {"name": "x", "namespace": "kube-system"}})
    assert status == 400
    status, _ = await http.post(CM, {"kind": "Secret", "metadata": {"name": "x"}})
    assert status == 400


async def test_resource_versions_increase_across_kinds(http: Http) -> None:
    seen = []
    for i in range(3):
        _, cm = await http.post(CM, {"metadata": {"name": f"c{i}"}})
        _, sec = await http.post("/api/v1/namespaces/default/secrets",
                                 {"metadata": {"name": f"s{i}"}})
        seen += [int(cm["metadata"]["resourceVersion"]), int(sec["metadata"]["resourceVersion"])]
    assert seen == sorted(seen) and len(set(seen)) == len(seen)
    _, listed = await http.get(CM)
    assert int(listed["metadata"]["resourceVersion"]) >= seen[-1]


async def test_update_with_stale_resource_version_conflicts(http: Http) -> None:
    _, cm = await http.post(CM, {"metadata": {"name": "occ"}, "data": {"v": "1"}})
    first = dict(cm, data={"v": "2"})
    status, updated = await http.put(f"{CM}/occ", first)
    assert status == 200 and updated["data"] == {"v": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(cm["metadata"]["resourceVersion"])
    status, body = await http.put(f"{CM}/occ", dict(cm, data={"v": "3"}))  # stale rv
    assert status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


async def test_update_keeps_server_owned_metadata(http: Http) -> None:
    _, cm = await http.post(CM, {"metadata": {"name": "keep"}})
    forged = {"metadata": {"name": "keep", "uid": "forged",
                           "creationTimestamp": "2000-01-01T00:00:00Z",
                           "resourceVersion": cm["metadata"]["resourceVersion"]},
              "data": {"a": "b"}}
    _, updated = await http.put(f"{CM}/keep", forged)
    assert updated["metadata"]["uid"] == cm["metadata"]["uid"]
    assert updated["metadata"]["creationTimestamp"] == cm["metadata"]["creationTimestamp"]


async def test_unconditional_update_allowed_for_builtins_not_custom(
        http: Http, widgets: str) -> None:
    await http.post(CM, {"metadata": {"name": "free"}})
    status, _ = await http.put(f"{CM}/free", {"metadata": {"name": "free"}, "data": {"x": "y"}})
    assert status == 200
    await http.post(widgets, {"metadata": {"name": "w"}, "spec": {"size": "1Gi"}})
    status, body = await http.put(f"{widgets}/w", {"apiVersion": "example.test/v1",
                                                   "kind": "Widget", "metadata": {"name": "w"},
                                                   "spec": {"size": "1Gi"}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.resourceVersion"


async def test_update_of_missing_object_and_name_mismatch(http: Http) -> None:
    status, _ = await http.put(f"{CM}/ghost", {"metadata": {"name": "ghost"}})
    assert status == 404
    await http.post(CM, {"metadata": {"name": "real"}})
    status, _ = await http.put(f"{CM}/real", {"metadata": {"name": "other"}})
    assert status == 400


async def test_noop_update_changes_nothing(api: ApiDouble, http: Http) -> None:
    _, cm = await http.post(CM, {"metadata": {"name": "same"}, "data": {"a": "1"}})
    before = api.resource_version
    status, again = await http.put(f"{CM}/same", cm)
    assert status == 200 and again["metadata"]["resourceVersion"] == cm["metadata"][
        "resourceVersion"]
    assert api.resource_version == before


async def test_generation_moves_on_spec_changes_only(http: Http, widgets: str) -> None:
    _, w = await http.post(widgets, {"metadata": {"name": "g"}, "spec": {"size": "1Gi"}})
    assert w["metadata"]["generation"] == 1
    _, w = await http.patch(f"{widgets}/g", {"metadata": {"labels": {"a": "b"}}})
    assert w["metadata"]["generation"] == 1
    _, w = await http.patch(f"{widgets}/g", {"spec": {"replicas": 3}})
    assert w["metadata"]["generation"] == 2
    _, w = await http.patch(f"{widgets}/g/status", {"status": {"replicas": 3}})
    assert w["metadata"]["generation"] == 2


async def test_builtin_defaults(http: Http) -> None:
    _, svc = await http.post("/api/v1/namespaces/default/services", {
        "metadata": {"name": "svc"}, "spec": {"ports": [{"port": 80}]}})
    assert svc["spec"]["type"] == "ClusterIP"
    assert svc["spec"]["clusterIP"].startswith("127.")  # loopback: dialling it stays local
    assert svc["spec"]["ports"][0] == {"port": 80, "protocol": "TCP", "targetPort": 80}
    _, secret = await http.post("/api/v1/namespaces/default/secrets", {
        "metadata": {"name": "tok"}, "stringData": {"token": "abc"}})
    assert secret["type"] == "Opaque" and secret["data"] == {"token": "YWJj"}
    assert "stringData" not in secret
    _, pod = await http.post("/api/v1/namespaces/default/pods", {
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]},
        "status": {"phase": "Running"}})
    assert pod["status"]["phase"] == "Pending"  # clients cannot create a status
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    _, ns = await http.post("/api/v1/namespaces", {"metadata": {"name": "fresh"}})
    assert ns["status"]["phase"] == "Active"
    assert ns["metadata"]["labels"]["kubernetes.io/metadata.name"] == "fresh"
    status, _ = await http.get("/api/v1/namespaces/fresh/serviceaccounts/default")
    assert status == 200


async def test_unknown_paths_are_404_status(http: Http) -> None:
    status, body = await http.get("/api/v1/namespaces/default/gizmos")
    assert status == 404 and body["kind"] == "Status"
    status, _ = await http.get("/apis/apps/v1/namespaces/default/deployments/x/log")
    assert status == 404


async def test_dry_run_stores_nothing(api: ApiDouble, http: Http) -> None:
    before = api.resource_version
    status, cm = await http.post(CM, {"metadata": {"name": "dry"}},
                                 params={"dryRun": "All"})
    assert status == 201 and cm["metadata"]["name"] == "dry"
    assert (await http.get(f"{CM}/dry"))[0] == 404
    assert api.resource_version == before


async def test_builtin_unknown_fields_are_dropped_or_rejected_when_strict(http: Http) -> None:
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "i:1", "imagePullPolicyy": "Always"}]}}
    status, body = await http.post("/api/v1/namespaces/default/pods", pod,
                                   params={"fieldValidation": "Strict"})
    assert status == 400
    assert 'unknown field "spec.containers[0].imagePullPolicyy"' in body["message"]
    status, created = await http.post("/api/v1/namespaces/default/pods", pod)
    assert status == 201 and "imagePullPolicyy" not in created["spec"]["containers"][0]


async def test_builtin_schema_violations_are_invalid(http: Http) -> None:
    status, body = await http.post("/api/v1/namespaces/default/pods", {
        "metadata": {"name": "p"}, "spec": {"containers": [{"image": "i:1"}]}})
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.containers[0].name"
    status, body = await http.post("/api/v1/namespaces/default/services", {
        "metadata": {"name": "s"}, "spec": {"ports": [{"port": "eighty"}]}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.ports[0].port"


async def test_label_and_owner_reference_rules(http: Http) -> None:
    status, body = await http.post(CM, {"metadata": {"name": "l", "labels": {
        "app": "x" * 64}}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "metadata.labels"
    status, _ = await http.post(CM, {"metadata": {"name": "l", "labels": {
        "example.com/app": "ok-1.2_3", "empty": ""}}})
    assert status == 201
    status, _ = await http.post(CM, {"metadata": {"name": "k", "labels": {"bad key": "v"}}})
    assert status == 422
    status, body = await http.post(CM, {"metadata": {"name": "o", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "l"}]}})
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "metadata.ownerReferences[0].uid"


async def test_generated_names_are_capped(http: Http) -> None:
    status, cm = await http.post(CM, {"metadata": {"generateName": "p" * 70}})
    assert status == 201 and len(cm["metadata"]["name"]) == 63


async def test_protobuf_bodies(http: Http) -> None:
    # k8s\0 + Unknown{typeMeta{v1, ConfigMap}, raw ConfigMap{metadata{name: pb}, data{a: b}}}
    meta = b"\x0a\x02pb"
    raw = b"\x0a" + bytes([len(meta)]) + meta + b"\x12\x06\x0a\x01a\x12\x01b"
    type_meta = b"\x0a\x02v1\x12\x09ConfigMap"
    body = (b"k8s\x00\x0a" + bytes([len(type_meta)]) + type_meta
            + b"\x12" + bytes([len(raw)]) + raw)
    async with http.session.post(f"{http.url}{CM}", data=body, headers={
            "Content-Type": "application/vnd.kubernetes.protobuf"}) as response:
        assert response.status == 201
        created = await response.json()
    assert created["metadata"]["name"] == "pb" and created["data"] == {"a": "b"}
    async with http.session.post(f"{http.url}{CM}", data=b"k8s\x00\x0a\xff", headers={
            "Content-Type": "application/vnd.kubernetes.protobuf"}) as response:
        assert response.status == 400
    status, body_ = await http.request("POST", CM, "<xml/>", content_type="application/xml")
    assert status == 415 and body_["reason"] == "UnsupportedMediaType"


async def test_immutable_fields_of_builtins(http: Http) -> None:
    pods = "/api/v1/namespaces/default/pods"
    await http.post(pods, {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "c", "image": "img:1", "resources": {"limits": {"memory": "1Gi"}}}]}})
    status, _ = await http.patch(f"{pods}/p", {"spec": {"containers": [
        {"name": "c", "image": "img:2", "resources": {"limits": {"memory": "1Gi"}}}]}})
    assert status == 200  # the image may change
    status, body = await http.patch(f"{pods}/p", {"spec": {"containers": [
        {"name": "c", "image": "img:2", "resources": {"limits": {"memory": "2Gi"}}}]}})
    assert status == 422 and "pod updates may not change fields" in body["message"]
    deploys = "/apis/apps/v1/namespaces/default/deployments"
    await http.post(deploys, {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}},
                     "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    status, body = await http.patch(f"{deploys}/d", {"spec": {"selector": {
        "matchLabels": {"app": "e"}}}})
    assert status == 422 and body["details"]["causes"][0]["field"] == "spec.selector"
    await http.post(CM, {"metadata": {"name": "frozen"}, "data": {"a": "1"},
                         "immutable": True})
    status, _ = await http.patch(f"{CM}/frozen", {"data": {"a": "2"}})
    assert status == 422
    status, _ = await http.patch(f"{CM}/frozen", {"metadata": {"labels": {"x": "y"}}})
    assert status == 200


async def test_pod_rules_beyond_the_schema(http: Http) -> None:
    pods = "/api/v1/namespaces/default/pods"

    def pod(**container: object) -> dict[str, object]:
        return {"metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "i:1", **container}]}}

    status, body = await http.post(pods, pod(resources={"limits": {"memory": "4GB"}}))
    assert status == 400 and "quantities must match the regular expression" in body["message"]
    status, body = await http.post(pods, pod(resources={
        "requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}}))
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec.containers[0].resources.requests"
    assert "must be less than or equal to memory limit of 1Gi" in body["message"]
    status, body = await http.post(pods, pod(image=""))
    assert status == 422
    assert body["details"]["causes"][0]["field"] == "spec.containers[0].image"
    status, _ = await http.post(pods, pod(resources={
        "requests": {"memory": "1024Mi", "cpu": "500m"},
        "limits": {"memory": "1Gi", "cpu": "0.5"}}))
    assert status == 201  # equal values in different units are fine
    bad_volume = pod()
    bad_volume["metadata"] = {"name": "v"}
    bad_volume["spec"]["volumes"] = [{"name": "spill", "emptyDir": {"sizeLimit": "20 Gi"}}]
    status, _ = await http.post(pods, bad_volume)
    assert status == 400
