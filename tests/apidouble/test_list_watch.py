"""list and watch: selectors, pagination, resourceVersion semantics, bookmarks, 410 Gone."""

from __future__ import annotations

import asyncio

from apidouble import ApiDouble
from apidouble.testing import Http

PODS = "/api/v1/namespaces/default/pods"


def _pod(name: str, **labels: str) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}}


async def _names(http: Http, path: str, **params: str) -> list[str]:
    status, body = await http.get(path, params=params)
    assert status == 200, body
    return [item["metadata"]["name"] for item in body["items"]]


async def test_list_kind_and_bare_items(http: Http, widgets: str) -> None:
    await http.post(PODS, _pod("a"))
    _, pods = await http.get(PODS)
    assert pods["kind"] == "PodList" and pods["apiVersion"] == "v1"
    assert "kind" not in pods["items"][0]  # built-in list items carry no kind on the wire
    await http.post(widgets, {"metadata": {"name": "w"}, "spec": {"size": "1Gi"}})
    _, listed = await http.get(widgets)
    assert listed["kind"] == "WidgetList" and listed["items"][0]["kind"] == "Widget"


async def test_label_selectors(http: Http) -> None:
    await http.post(PODS, _pod("a", app="web", tier="front"))
    await http.post(PODS, _pod("b", app="web", tier="back"))
    await http.post(PODS, _pod("c", app="db"))
    await http.post(PODS, _pod("d"))
    assert await _names(http, PODS, labelSelector="app=web") == ["a", "b"]
    assert await _names(http, PODS, labelSelector="app==web,tier!=back") == ["a"]
    assert await _names(http, PODS, labelSelector="app in (db, web)") == ["a", "b", "c"]
    assert await _names(http, PODS, labelSelector="app notin (web)") == ["c", "d"]
    assert await _names(http, PODS, labelSelector="tier") == ["a", "b"]
    assert await _names(http, PODS, labelSelector="!app") == ["d"]
    assert await _names(http, PODS, labelSelector="app in (web),!tier") == []
    status, body = await http.get(PODS, params={"labelSelector": "app in web"})
    assert status == 400 and body["reason"] == "BadRequest"


async def test_field_selectors(http: Http) -> None:
    await http.post(PODS, _pod("a"))
    await http.post(PODS, _pod("b"))
    await http.post("/api/v1/namespaces/kube-system/pods", _pod("c"))
    assert await _names(http, PODS, fieldSelector="metadata.name=b") == ["b"]
    assert await _names(http, PODS, fieldSelector="metadata.name!=b") == ["a"]
    assert await _names(http, "/api/v1/pods",
                        fieldSelector="metadata.namespace=kube-system") == ["c"]
    assert await _names(http, PODS, fieldSelector="status.phase=Pending") == ["a", "b"]
    status, body = await http.get(PODS, params={"fieldSelector": "spec.image=x"})
    assert status == 400 and "field label not supported" in body["message"]


async def test_limit_and_continue(http: Http) -> None:
    for i in range(5):
        await http.post("/api/v1/namespaces/default/configmaps",
                        {"metadata": {"name": f"cm{i}"}})
    path = "/api/v1/namespaces/default/configmaps"
    _, first = await http.get(path, params={"limit": "2"})
    assert [i["metadata"]["name"] for i in first["items"]] == ["cm0", "cm1"]
    token = first["metadata"]["continue"]
    _, second = await http.get(path, params={"limit": "2", "continue": token})
    assert [i["metadata"]["name"] for i in second["items"]] == ["cm2", "cm3"]
    _, last = await http.get(path, params={"limit": "2",
                                           "continue": second["metadata"]["continue"]})
    assert [i["metadata"]["name"] for i in last["items"]] == ["cm4"]
    assert "continue" not in last["metadata"]


async def test_watch_without_rv_starts_with_what_exists(http: Http) -> None:
    await http.post(PODS, _pod("old"))
    events = await http.watch(PODS, {}, 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "old")]
    assert events[0]["object"]["kind"] == "Pod"  # watch events always carry kind


async def test_watch_from_rv_sends_only_later_events(http: Http) -> None:
    _, a = await http.post(PODS, _pod("a"))
    _, listed = await http.get(PODS)
    rv = listed["metadata"]["resourceVersion"]
    await http.patch(f"{PODS}/a", {"metadata": {"labels": {"x": "1"}}})
    await http.post(PODS, _pod("b"))
    await http.delete(f"{PODS}/a")
    events = await http.watch(PODS, {"resourceVersion": rv}, 3)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert rvs == sorted(rvs) and rvs[0] > int(rv)
    assert a["metadata"]["uid"] == events[2]["object"]["metadata"]["uid"]


async def test_watch_streams_live_changes(api: ApiDouble, http: Http) -> None:
    rv = str(api.resource_version)

    async def produce() -> None:
        # Create once the watch request has arrived, so the event is live, not replayed.
        await asyncio.to_thread(api.requests.wait_for, lambda r: r["verb"] == "watch")
        await http.post(PODS, _pod("live"))

    producer = asyncio.create_task(produce())
    events = await http.watch(PODS, {"resourceVersion": rv}, 1)
    await producer
    assert events[0]["type"] == "ADDED" and events[0]["object"]["metadata"]["name"] == "live"


async def test_watch_with_selector_turns_matching_changes_into_added_deleted(
        api: ApiDouble, http: Http) -> None:
    await http.post(PODS, _pod("p", role="idle"))
    rv = str(api.resource_version)
    await http.patch(f"{PODS}/p", {"metadata": {"labels": {"role": "worker"}}})
    await http.patch(f"{PODS}/p", {"metadata": {"labels": {"extra": "1"}}})
    await http.patch(f"{PODS}/p", {"metadata": {"labels": {"role": "idle"}}})
    events = await http.watch(PODS, {"resourceVersion": rv, "labelSelector": "role=worker"}, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]


async def test_namespaced_watch_sees_only_its_namespace(api: ApiDouble, http: Http) -> None:
    rv = str(api.resource_version)
    await http.post("/api/v1/namespaces/kube-system/pods", _pod("elsewhere"))
    await http.post(PODS, _pod("here"))
    events = await http.watch(PODS, {"resourceVersion": rv}, 1)
    assert events[0]["object"]["metadata"]["name"] == "here"
    everywhere = await http.watch("/api/v1/pods", {"resourceVersion": rv}, 2)
    assert [e["object"]["metadata"]["name"] for e in everywhere] == ["elsewhere", "here"]


async def test_bookmarks_and_timeout(api: ApiDouble, http: Http) -> None:
    rv = str(api.resource_version)
    events = await http.watch(PODS, {"resourceVersion": rv, "allowWatchBookmarks": "true"}, 1)
    assert events[0]["type"] == "BOOKMARK"
    assert events[0]["object"]["kind"] == "Pod"
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)
    # timeoutSeconds ends the stream: fewer events than asked for, no hang.
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = await http.watch(PODS, {"resourceVersion": rv, "timeoutSeconds": "1"}, 5)
    assert events == [] and loop.time() - started < 3


async def test_send_initial_events_ends_with_annotated_bookmark(http: Http) -> None:
    await http.post(PODS, _pod("a"))
    events = await http.watch(PODS, {"sendInitialEvents": "true",
                                     "resourceVersionMatch": "NotOlderThan",
                                     "allowWatchBookmarks": "true"}, 2)
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    assert events[1]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"}


async def test_too_old_resource_version_is_gone(api: ApiDouble, http: Http) -> None:
    await http.post(PODS, _pod("a"))
    old = str(api.resource_version - 1)
    api.compact()
    events = await http.watch(PODS, {"resourceVersion": old}, 1)
    assert events[0]["type"] == "ERROR"
    assert events[0]["object"]["code"] == 410 and events[0]["object"]["reason"] == "Expired"


async def test_continue_follows_namespace_then_name_order(http: Http) -> None:
    # "a" < "a-b" as namespaces even though "a/z" > "a-b/a" as strings.
    for ns in ("a", "a-b"):
        await http.post("/api/v1/namespaces", {"metadata": {"name": ns}})
    await http.post("/api/v1/namespaces/a/configmaps", {"metadata": {"name": "z"}})
    await http.post("/api/v1/namespaces/a-b/configmaps", {"metadata": {"name": "a"}})
    seen, token = [], ""
    while True:
        params = {"limit": "1", **({"continue": token} if token else {})}
        _, page = await http.get("/api/v1/configmaps", params=params)
        seen += [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert seen == [("a", "z"), ("a-b", "a")]
