"""delete: finalizers, propagation policies, owner-reference GC, namespaces and CRDs."""

from __future__ import annotations

from typing import Any

from apidouble import ApiDouble
from apidouble.testing import Http

CM = "/api/v1/namespaces/default/configmaps"
PODS = "/api/v1/namespaces/default/pods"


def _owned(name: str, owner: dict[str, Any], block: bool = False,
           finalizers: list[str] | None = None) -> dict[str, Any]:
    ref = {"apiVersion": owner.get("apiVersion", "v1"), "kind": owner.get("kind", "ConfigMap"),
           "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"]}
    if block:
        ref["blockOwnerDeletion"] = True
    meta: dict[str, Any] = {"name": name, "ownerReferences": [ref]}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"metadata": meta}


async def test_delete_without_finalizers_removes_at_once(http: Http) -> None:
    await http.post(CM, {"metadata": {"name": "gone"}})
    status, last = await http.delete(f"{CM}/gone")
    assert status == 200 and last["metadata"]["name"] == "gone"
    assert (await http.get(f"{CM}/gone"))[0] == 404
    status, body = await http.delete(f"{CM}/gone")
    assert status == 404 and body["reason"] == "NotFound"


async def test_finalizers_hold_the_object_until_removed(http: Http, widgets: str) -> None:
    await http.post(widgets, {"metadata": {"name": "f", "finalizers": ["example.test/keep"]},
                              "spec": {"size": "1Gi"}})
    status, w = await http.delete(f"{widgets}/f")
    assert status == 200 and w["metadata"]["deletionTimestamp"]
    assert w["metadata"]["generation"] == 2  # a real server bumps generation here
    status, w = await http.get(f"{widgets}/f")
    assert status == 200 and w["metadata"]["deletionTimestamp"]
    status, body = await http.patch(f"{widgets}/f", {"metadata": {"finalizers": [
        "example.test/keep", "example.test/more"]}})
    assert status == 422 and "no new finalizers" in body["message"]
    status, _ = await http.patch(f"{widgets}/f", {"metadata": {"finalizers": None}})
    assert status == 200
    assert (await http.get(f"{widgets}/f"))[0] == 404


async def test_watch_sees_deletion_timestamp_then_deleted(api: ApiDouble, http: Http) -> None:
    await http.post(CM, {"metadata": {"name": "w", "finalizers": ["t/x"]}})
    rv = str(api.resource_version)
    await http.delete(f"{CM}/w")
    await http.patch(f"{CM}/w", {"metadata": {"finalizers": []}})
    events = await http.watch(CM, {"resourceVersion": rv}, 2)
    assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
    assert events[0]["object"]["metadata"]["deletionTimestamp"]


async def test_preconditions(http: Http) -> None:
    _, cm = await http.post(CM, {"metadata": {"name": "pre"}})
    status, body = await http.delete(f"{CM}/pre", {"kind": "DeleteOptions", "apiVersion": "v1",
                                                   "preconditions": {"uid": "other"}})
    assert status == 409 and body["reason"] == "Conflict"
    status, _ = await http.delete(f"{CM}/pre", {"preconditions": {
        "uid": cm["metadata"]["uid"], "resourceVersion": cm["metadata"]["resourceVersion"]}})
    assert status == 200


async def test_background_gc_deletes_dependents(http: Http) -> None:
    _, owner = await http.post(CM, {"metadata": {"name": "owner"}})
    await http.post(CM, _owned("child", owner))
    _, other = await http.post(CM, {"metadata": {"name": "other-owner"}})
    shared = _owned("shared", owner)
    shared["metadata"]["ownerReferences"].append(_owned("x", other)["metadata"][
        "ownerReferences"][0])
    await http.post(CM, shared)
    await http.delete(f"{CM}/owner")
    assert (await http.get(f"{CM}/child"))[0] == 404
    status, survivor = await http.get(f"{CM}/shared")  # another owner still exists
    assert status == 200
    assert [r["name"] for r in survivor["metadata"]["ownerReferences"]] == ["other-owner"]


async def test_gc_cascades_through_generations(http: Http, widgets: str) -> None:
    _, w = await http.post(widgets, {"metadata": {"name": "pool"}, "spec": {"size": "1Gi"}})
    _, pod = await http.post(PODS, {**_owned("pod", w),
                                    "spec": {"containers": [{"name": "c", "image": "i"}]}})
    pod_ref = {**pod, "apiVersion": "v1", "kind": "Pod"}
    await http.post(CM, _owned("grandchild", pod_ref))
    await http.delete(f"{widgets}/pool")
    assert (await http.get(f"{PODS}/pod"))[0] == 404
    assert (await http.get(f"{CM}/grandchild"))[0] == 404


async def test_foreground_waits_for_blocking_dependents(http: Http) -> None:
    _, owner = await http.post(CM, {"metadata": {"name": "fg"}})
    await http.post(CM, _owned("blocker", owner, block=True, finalizers=["t/hold"]))
    await http.post(CM, _owned("plain", owner))
    status, body = await http.delete(f"{CM}/fg", {"propagationPolicy": "Foreground"})
    assert status == 200 and "foregroundDeletion" in body["metadata"]["finalizers"]
    assert (await http.get(f"{CM}/plain"))[0] == 404
    _, blocker = await http.get(f"{CM}/blocker")
    assert blocker["metadata"]["deletionTimestamp"]
    status, held = await http.get(f"{CM}/fg")
    assert status == 200 and held["metadata"]["deletionTimestamp"]
    await http.patch(f"{CM}/blocker", {"metadata": {"finalizers": None}})
    assert (await http.get(f"{CM}/blocker"))[0] == 404
    assert (await http.get(f"{CM}/fg"))[0] == 404


async def test_orphan_keeps_dependents_without_the_reference(http: Http) -> None:
    _, owner = await http.post(CM, {"metadata": {"name": "parent"}})
    await http.post(CM, _owned("kid", owner))
    status, _ = await http.delete(f"{CM}/parent", params={"propagationPolicy": "Orphan"})
    assert status == 200
    status, kid = await http.get(f"{CM}/kid")
    assert status == 200 and "ownerReferences" not in kid["metadata"]


async def test_delete_collection_with_selector(http: Http) -> None:
    for name, app in (("a", "x"), ("b", "x"), ("c", "y")):
        await http.post(CM, {"metadata": {"name": name, "labels": {"app": app}}})
    status, body = await http.delete(CM, params={"labelSelector": "app=x"})
    assert status == 200 and body["kind"] == "ConfigMapList"
    assert sorted(i["metadata"]["name"] for i in body["items"]) == ["a", "b"]
    _, left = await http.get(CM)
    assert [i["metadata"]["name"] for i in left["items"]] == ["c"]


async def test_namespace_deletion_takes_its_content(http: Http) -> None:
    await http.post("/api/v1/namespaces", {"metadata": {"name": "tmp"}})
    await http.post("/api/v1/namespaces/tmp/configmaps",
                    {"metadata": {"name": "held", "finalizers": ["t/x"]}})
    await http.post("/api/v1/namespaces/tmp/secrets", {"metadata": {"name": "s"}})
    status, ns = await http.delete("/api/v1/namespaces/tmp")
    assert status == 200 and ns["status"]["phase"] == "Terminating"
    assert (await http.get("/api/v1/namespaces/tmp/secrets/s"))[0] == 404
    assert (await http.get("/api/v1/namespaces/tmp"))[0] == 200
    await http.patch("/api/v1/namespaces/tmp/configmaps/held",
                     {"metadata": {"finalizers": None}})
    assert (await http.get("/api/v1/namespaces/tmp"))[0] == 404


async def test_crd_deletion_removes_custom_resources(http: Http, widgets: str) -> None:
    await http.post(widgets, {"metadata": {"name": "a"}, "spec": {"size": "1Gi"}})
    status, _ = await http.delete(
        "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.test")
    assert status == 200
    assert (await http.get(widgets))[0] == 404


async def test_invalid_propagation_policy(http: Http) -> None:
    await http.post(CM, {"metadata": {"name": "p"}})
    status, _ = await http.delete(f"{CM}/p", params={"propagationPolicy": "Sideways"})
    assert status == 400


async def test_no_new_custom_resources_while_their_crd_terminates(
        http: Http, widgets: str) -> None:
    await http.post(widgets, {"metadata": {"name": "held", "finalizers": ["t/x"]},
                              "spec": {"size": "1Gi"}})
    crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.test"
    await http.delete(crd)
    status, body = await http.post(widgets, {"metadata": {"name": "late"},
                                             "spec": {"size": "1Gi"}})
    assert status == 405 and body["reason"] == "MethodNotAllowed"
    await http.patch(f"{widgets}/held", {"metadata": {"finalizers": None}})
    assert (await http.get(crd))[0] == 404


async def test_dependent_of_an_absent_owner_is_collected(http: Http) -> None:
    _, owner = await http.post(CM, {"metadata": {"name": "real-owner"}})
    wrong_uid = _owned("orphaned", owner)
    wrong_uid["metadata"]["ownerReferences"][0]["uid"] = "00000000-0000-0000-0000-000000000000"
    status, _ = await http.post(CM, wrong_uid)
    assert status == 201  # accepted, then the garbage collector removes it
    assert (await http.get(f"{CM}/orphaned"))[0] == 404
    # An owner in another namespace does not count: references do not cross namespaces.
    _, foreign = await http.post("/api/v1/namespaces/kube-system/configmaps",
                                 {"metadata": {"name": "foreign"}})
    await http.post(CM, _owned("cross", foreign))
    assert (await http.get(f"{CM}/cross"))[0] == 404
    # With one live owner left, only the dangling reference goes.
    mixed = _owned("mixed", owner)
    mixed["metadata"]["ownerReferences"].append(wrong_uid["metadata"]["ownerReferences"][0])
    await http.post(CM, mixed)
    status, kept = await http.get(f"{CM}/mixed")
    assert status == 200
    assert [r["uid"] for r in kept["metadata"]["ownerReferences"]] == [owner["metadata"]["uid"]]


async def test_owner_of_an_unserved_kind_is_left_alone(http: Http) -> None:
    ref = {"apiVersion": "nowhere.test/v1", "kind": "Thing", "name": "t",
           "uid": "11111111-1111-1111-1111-111111111111"}
    await http.post(CM, {"metadata": {"name": "waits", "ownerReferences": [ref]}})
    assert (await http.get(f"{CM}/waits"))[0] == 200
