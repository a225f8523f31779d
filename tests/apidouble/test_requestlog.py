"""The request log names what each request meant in RBAC terms."""

from __future__ import annotations

from apidouble import ApiDouble
from apidouble.testing import Http


async def test_requests_are_logged_with_rbac_verbs(api: ApiDouble, http: Http,
                                                   widgets: str) -> None:
    api.requests.clear()
    cm = "/api/v1/namespaces/default/configmaps"
    await http.post(cm, {"metadata": {"name": "c"}})
    await http.get(f"{cm}/c")
    await http.get(cm)
    await http.watch(cm, {"timeoutSeconds": "1"}, 1)
    await http.put(f"{cm}/c", {"metadata": {"name": "c"}})
    await http.patch(f"{cm}/c", {"data": {"a": "b"}})
    await http.delete(f"{cm}/c")
    await http.delete(cm)
    await http.post(widgets, {"metadata": {"name": "w"}, "spec": {"size": "1Gi"}})
    await http.patch(f"{widgets}/w/status", {"status": {"replicas": 1}})
    await http.get(f"{widgets}/w/scale")
    await http.get("/api/v1/namespaces/default/secrets/missing")
    await http.get("/apis")
    records = list(api.requests)
    verbs = [(r["verb"], r["resource"], r["subresource"], r["name"]) for r in records]
    assert verbs == [
        ("create", "configmaps", "", "c"), ("get", "configmaps", "", "c"),
        ("list", "configmaps", "", ""), ("watch", "configmaps", "", ""),
        ("update", "configmaps", "", "c"), ("patch", "configmaps", "", "c"),
        ("delete", "configmaps", "", "c"), ("deletecollection", "configmaps", "", ""),
        ("create", "widgets", "", "w"), ("patch", "widgets", "status", "w"),
        ("get", "widgets", "scale", "w"), ("get", "secrets", "", "missing"),
        ("get", "", "", "")]
    assert records[8]["apiGroup"] == "example.test" and records[8]["namespace"] == "default"
    assert records[11]["code"] == 404
    assert records[12]["path"] == "/apis"
    assert ("example.test", "widgets/status", "patch") in api.requests.permissions()
    assert ("", "configmaps", "deletecollection") in api.requests.permissions()
