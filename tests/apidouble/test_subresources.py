"""status and scale subresources."""

from __future__ import annotations

from apidouble.testing import Http

DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"


async def test_main_endpoint_ignores_status_and_status_endpoint_ignores_spec(
        http: Http, widgets: str) -> None:
    _, w = await http.post(widgets, {"metadata": {"name": "w"}, "spec": {"size": "1Gi"},
                                     "status": {"replicas": 7}})
    assert "status" not in w  # status cannot be set on create
    _, w = await http.patch(f"{widgets}/w", {"spec": {"replicas": 2},
                                             "status": {"replicas": 5}})
    assert w["spec"]["replicas"] == 2 and "status" not in w
    _, w = await http.patch(f"{widgets}/w/status", {"spec": {"replicas": 9},
                                                    "status": {"replicas": 2},
                                                    "metadata": {"labels": {"x": "y"}}})
    assert w["status"] == {"replicas": 2} and w["spec"]["replicas"] == 2
    assert "labels" not in w["metadata"]
    w["status"]["replicas"] = 3
    w["spec"]["replicas"] = 4
    status, w = await http.put(f"{widgets}/w/status", w)
    assert status == 200 and w["status"]["replicas"] == 3 and w["spec"]["replicas"] == 2
    status, got = await http.get(f"{widgets}/w/status")
    assert status == 200 and got["status"]["replicas"] == 3


async def test_status_subresource_absent_is_404(http: Http) -> None:
    await http.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    status, _ = await http.patch("/api/v1/namespaces/default/configmaps/c/status",
                                 {"status": {}})
    assert status == 404


async def test_without_status_subresource_status_is_ordinary_content(
        http: Http, widgets: str) -> None:
    beta = "/apis/example.test/v1beta1/namespaces/default/widgets"
    _, w = await http.post(beta, {"metadata": {"name": "b"}, "spec": {"size": "1Gi"},
                                  "status": {"note": "set by client"}})
    assert w["apiVersion"] == "example.test/v1beta1"
    assert w["status"] == {"note": "set by client"}
    _, w = await http.patch(f"{beta}/b", {"status": {"note": "changed"}})
    assert w["metadata"]["generation"] == 2  # status is spec-like without the subresource
    # The same object through the storage version (preserving the free-form v1beta1 field
    # only where v1's schema allows it).
    status, v1 = await http.get(f"{widgets}/b")
    assert status == 200 and v1["apiVersion"] == "example.test/v1"


async def test_scale_subresource_of_a_custom_resource(http: Http, widgets: str) -> None:
    await http.post(widgets, {"metadata": {"name": "s"}, "spec": {"size": "1Gi"}})
    await http.patch(f"{widgets}/s/status", {"status": {"replicas": 1,
                                                        "selector": "app=s"}})
    status, scale = await http.get(f"{widgets}/s/scale")
    assert status == 200
    assert (scale["kind"], scale["apiVersion"]) == ("Scale", "autoscaling/v1")
    assert scale["spec"] == {"replicas": 1}
    assert scale["status"] == {"replicas": 1, "selector": "app=s"}
    status, scale = await http.patch(f"{widgets}/s/scale", {"spec": {"replicas": 4}})
    assert status == 200 and scale["spec"]["replicas"] == 4
    _, w = await http.get(f"{widgets}/s")
    assert w["spec"]["replicas"] == 4 and w["metadata"]["generation"] == 2
    scale["spec"]["replicas"] = 3
    status, replaced = await http.put(f"{widgets}/s/scale", scale)
    assert status == 200 and replaced["spec"]["replicas"] == 3
    status, body = await http.put(f"{widgets}/s/scale", scale)  # stale resourceVersion
    assert status == 409 and body["reason"] == "Conflict"
    # Validation of the underlying object applies: the CEL rule caps replicas at ten.
    status, body = await http.patch(f"{widgets}/s/scale", {"spec": {"replicas": 11}})
    assert status == 422 and "at most ten widgets" in body["message"]


async def test_scale_subresource_of_a_deployment(http: Http) -> None:
    await http.post(DEPLOYS, {"metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}},
                     "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    status, scale = await http.get(f"{DEPLOYS}/d/scale")
    assert status == 200 and scale["spec"]["replicas"] == 1
    assert scale["status"]["selector"] == "app=d"
    status, _ = await http.patch(f"{DEPLOYS}/d/scale", {"spec": {"replicas": 3}})
    _, deploy = await http.get(f"{DEPLOYS}/d")
    assert deploy["spec"]["replicas"] == 3 and deploy["metadata"]["generation"] == 2


async def test_scale_of_unscalable_kind_is_404(http: Http) -> None:
    await http.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": "c"}})
    status, _ = await http.get("/api/v1/namespaces/default/configmaps/c/scale")
    assert status == 404
