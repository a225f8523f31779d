"""Table output for kubectl get: printer columns, pods, ages."""

from __future__ import annotations

import pytest
from apidouble.tables import human_duration
from apidouble.testing import Http

TABLE = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io,"
                   "application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"}


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (0, "0s"), (119, "119s"), (125, "2m5s"), (600, "10m"),
    (3 * 3600 + 60, "3h1m"), (10 * 3600, "10h"), (3 * 86400 + 3600, "3d1h"),
    (30 * 86400, "30d"), (800 * 86400, "2y70d"), (9 * 365 * 86400, "9y")])
def test_human_duration(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


async def test_custom_resource_table_uses_printer_columns(http: Http, widgets: str) -> None:
    await http.post(widgets, {"metadata": {"name": "w"}, "spec": {"size": "1Gi",
                                                                 "replicas": 2}})
    await http.patch(f"{widgets}/w/status", {"status": {"conditions": [
        {"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True"}]}})
    status, table = await http.get(widgets, headers=TABLE)
    assert status == 200 and table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Replicas", "Color", "Ready", "Age"]
    cells = table["rows"][0]["cells"]
    assert cells[:4] == ["w", 2, "red", "True"]
    assert cells[4].endswith("s")
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    status, one = await http.get(f"{widgets}/w", headers=TABLE,
                                 params={"includeObject": "Object"})
    assert one["rows"][0]["object"]["spec"]["size"] == "1Gi"


async def test_missing_values_are_null_cells(http: Http, widgets: str) -> None:
    await http.post(widgets, {"metadata": {"name": "w"}, "spec": {"size": "1Gi"}})
    _, table = await http.get(widgets, headers=TABLE)
    assert table["rows"][0]["cells"][3] is None


async def test_pod_table(http: Http) -> None:
    await http.post("/api/v1/namespaces/default/pods", {
        "metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "i"},
                                                           {"name": "b", "image": "i"}]}})
    _, table = await http.get("/api/v1/namespaces/default/pods", headers=TABLE)
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name", "Ready", "Status", "Restarts", "Age"]
    assert table["rows"][0]["cells"][:4] == ["p", "0/2", "Pending", 0]


async def test_plain_json_without_table_accept(http: Http) -> None:
    _, listed = await http.get("/api/v1/namespaces")
    assert listed["kind"] == "NamespaceList"
