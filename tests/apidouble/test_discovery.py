"""Discovery as kubectl, kopf and the kubernetes client read it."""

from __future__ import annotations

from typing import Any

from apidouble import ApiDouble
from apidouble.testing import Http


async def test_version_and_core_discovery(http: Http) -> None:
    status, version = await http.get("/version")
    assert status == 200 and version["major"] == "1" and version["minor"] == "32"
    status, api = await http.get("/api")
    assert status == 200 and api["kind"] == "APIVersions" and api["versions"] == ["v1"]
    status, core = await http.get("/api/v1")
    assert core["kind"] == "APIResourceList" and core["groupVersion"] == "v1"
    names = {r["name"]: r for r in core["resources"]}
    for plural in ("namespaces", "pods", "services", "secrets", "configmaps", "events",
                   "serviceaccounts", "persistentvolumeclaims", "pods/status"):
        assert plural in names
    assert names["pods"]["namespaced"] and not names["namespaces"]["namespaced"]
    assert "watch" in names["pods"]["verbs"] and "deletecollection" in names["pods"]["verbs"]


async def test_group_versions_have_no_leading_slash(http: Http) -> None:
    status, groups = await http.get("/apis")
    assert status == 200 and groups["kind"] == "APIGroupList"
    by_name = {g["name"]: g for g in groups["groups"]}
    for name in ("apps", "rbac.authorization.k8s.io", "coordination.k8s.io",
                 "apiextensions.k8s.io", "events.k8s.io", "networking.k8s.io", "policy"):
        gv = by_name[name]["preferredVersion"]["groupVersion"]
        assert gv == f"{name}/v1"
    status, apps = await http.get("/apis/apps/v1")
    assert apps["groupVersion"] == "apps/v1"
    scale = next(r for r in apps["resources"] if r["name"] == "deployments/scale")
    assert (scale["group"], scale["version"], scale["kind"]) == ("autoscaling", "v1", "Scale")


async def test_custom_resources_appear_and_vanish_with_their_crd(
        api: ApiDouble, http: Http, widgets_crd: dict[str, Any]) -> None:
    assert (await http.get("/apis/example.test/v1"))[0] == 404
    status, _ = await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                widgets_crd)
    assert status == 201
    _, groups = await http.get("/apis")
    group = next(g for g in groups["groups"] if g["name"] == "example.test")
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["groupVersion"] == "example.test/v1"
    _, resources = await http.get("/apis/example.test/v1")
    names = {r["name"]: r for r in resources["resources"]}
    assert names["widgets"]["kind"] == "Widget" and names["widgets"]["shortNames"] == ["wd"]
    assert "widgets/status" in names and "widgets/scale" in names
    _, beta = await http.get("/apis/example.test/v1beta1")
    assert [r["name"] for r in beta["resources"]] == ["widgets"]  # no subresources there

    status, _ = await http.delete(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.test")
    assert status == 200
    assert (await http.get("/apis/example.test/v1"))[0] == 404
    assert (await http.get("/apis/example.test/v1/namespaces/default/widgets"))[0] == 404


async def test_crd_status_is_established(http: Http, widgets_crd: dict[str, Any]) -> None:
    _, crd = await http.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                             widgets_crd)
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert crd["status"]["acceptedNames"]["listKind"] == "WidgetList"
    assert crd["status"]["storedVersions"] == ["v1"]


async def test_invalid_crd_is_rejected(http: Http, widgets_crd: dict[str, Any]) -> None:
    widgets_crd["metadata"]["name"] = "gadgets.example.test"
    status, body = await http.post(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", widgets_crd)
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "metadata.name"


async def test_openapi_v3_announces_server_side_field_validation(
        http: Http, widgets: str) -> None:
    status, index = await http.get("/openapi/v3")
    assert status == 200
    url = index["paths"]["apis/example.test/v1"]["serverRelativeURL"]
    status, doc = await http.get(url)
    assert status == 200 and doc["openapi"].startswith("3.")
    patch = doc["paths"]["/apis/example.test/v1/namespaces/{namespace}/widgets/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "example.test", "version": "v1", "kind": "Widget"}
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    schema = doc["components"]["schemas"]["test.example.v1.Widget"]
    assert schema["properties"]["spec"]["properties"]["color"]["enum"] == ["red", "blue"]
    assert (await http.get("/openapi/v3/apis/nothing.test/v1"))[0] == 404
