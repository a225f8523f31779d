"""core/v1 and events.k8s.io/v1 Events are one store seen through two APIs."""

from __future__ import annotations

from apidouble import ApiDouble
from apidouble.testing import Http

CORE = "/api/v1/namespaces/default/events"
NEW = "/apis/events.k8s.io/v1/namespaces/default/events"


async def test_core_event_seen_through_events_api(api: ApiDouble, http: Http) -> None:
    rv = str(api.resource_version)
    status, _ = await http.post(CORE, {
        "metadata": {"name": "e1"}, "reason": "Scaled", "message": "to 3", "type": "Normal",
        "involvedObject": {"kind": "Widget", "name": "w", "namespace": "default"},
        "source": {"component": "memkube-operator"}, "count": 2})
    assert status == 201
    status, event = await http.get(f"{NEW}/e1")
    assert status == 200 and event["apiVersion"] == "events.k8s.io/v1"
    assert event["note"] == "to 3" and event["regarding"]["name"] == "w"
    assert event["deprecatedSource"] == {"component": "memkube-operator"}
    assert event["deprecatedCount"] == 2 and "message" not in event
    _, listed = await http.get(NEW, params={"fieldSelector": "regarding.name=w"})
    assert [e["metadata"]["name"] for e in listed["items"]] == ["e1"]
    watched = await http.watch(NEW, {"resourceVersion": rv}, 1)
    assert watched[0]["type"] == "ADDED" and watched[0]["object"]["note"] == "to 3"


async def test_events_api_writes_are_core_events(http: Http) -> None:
    status, _ = await http.post(NEW, {
        "metadata": {"name": "e2"}, "reason": "Created", "note": "hello", "type": "Normal",
        "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "memkube.dev/op",
        "reportingInstance": "op-1", "action": "Create",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "default"}})
    assert status == 201
    _, core = await http.get(f"{CORE}/e2")
    assert core["message"] == "hello" and core["involvedObject"]["name"] == "p"
    assert core["reportingComponent"] == "memkube.dev/op"
    status, patched = await http.patch(f"{NEW}/e2", {"note": "changed"})
    assert status == 200 and patched["note"] == "changed"
    _, core = await http.get(f"{CORE}/e2")
    assert core["message"] == "changed"
