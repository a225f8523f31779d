"""The kubelet stand-in: ready pods and OOM kills, seen by watchers as status changes."""

from __future__ import annotations

from apidouble import ApiDouble
from apidouble.testing import Http

PODS = "/api/v1/namespaces/default/pods"


def _pod(name: str, app: str) -> dict[str, object]:
    return {"metadata": {"name": name, "labels": {"app": app}},
            "spec": {"containers": [{"name": "worker", "image": "memkube:1"}]}}


async def test_mark_pods_ready(api: ApiDouble, http: Http) -> None:
    await http.post(PODS, _pod("a", "w"))
    await http.post(PODS, _pod("b", "other"))
    rv = str(api.resource_version)
    updated = api.mark_pods_ready("default", "app=w")
    assert [p["metadata"]["name"] for p in updated] == ["a"]
    _, pod = await http.get(f"{PODS}/a")
    status = pod["status"]
    assert status["phase"] == "Running" and status["podIP"].startswith("127.")
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    assert status["containerStatuses"][0]["ready"] is True
    assert pod["spec"]["nodeName"]
    _, other = await http.get(f"{PODS}/b")
    assert other["status"]["phase"] == "Pending"
    events = await http.watch(PODS, {"resourceVersion": rv}, 2)
    assert [e["type"] for e in events] == ["MODIFIED", "MODIFIED"]
    assert events[-1]["object"]["status"]["phase"] == "Running"


async def test_set_oom_killed(api: ApiDouble, http: Http) -> None:
    await http.post(PODS, _pod("a", "w"))
    api.mark_pods_ready("default")
    api.set_oom_killed("default", "a")
    _, pod = await http.get(f"{PODS}/a")
    container = pod["status"]["containerStatuses"][0]
    assert container["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert container["lastState"]["terminated"]["exitCode"] == 137
    assert container["restartCount"] == 1
    api.mark_pods_ready("default")  # a later readiness report keeps the history
    _, pod = await http.get(f"{PODS}/a")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 1
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == \
        "OOMKilled"


async def test_graceful_pod_termination_waits_for_the_kubelet(http: Http) -> None:
    async with ApiDouble(graceful_pods=True) as api:
        local = Http(http.session, api.url)
        for name in ("a", "b"):
            await local.post(PODS, _pod(name, "w"))
        api.mark_pods_ready("default")  # binds a and b to the node
        await local.post(PODS, _pod("pending", "w"))
        status, pod = await local.delete(f"{PODS}/a")
        assert status == 200 and pod["metadata"]["deletionGracePeriodSeconds"] == 30
        assert pod["metadata"]["deletionTimestamp"]
        assert (await local.get(f"{PODS}/a"))[0] == 200  # Terminating
        await local.delete(f"{PODS}/pending")  # never scheduled: gone at once
        assert (await local.get(f"{PODS}/pending"))[0] == 404
        await local.delete(f"{PODS}/b", params={"gracePeriodSeconds": "0"})
        assert (await local.get(f"{PODS}/b"))[0] == 404  # forced
        assert api.finish_pod_terminations("default") == ["a"]
        assert (await local.get(f"{PODS}/a"))[0] == 404
