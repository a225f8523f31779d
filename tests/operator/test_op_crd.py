"""The CRD: structural, described, defaulted, validated (schema and CEL), scalable."""

from __future__ import annotations

import copy
from typing import Any

import celpy
import jsonschema
import pytest
from celpy.adapter import json_to_cel
from kubernetes_validate import validate
from memkube_operator.crd import apply_defaults, load_crd, schema
from opcases import pool_body


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if "items" in node:
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


def to_jsonschema(node: Any) -> Any:
    """openAPIV3Schema -> JSON Schema: nullable, int-or-string and exclusiveMinimum."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes")}
    out.pop("nullable", None)
    if node.get("x-kubernetes-int-or-string"):
        pattern = out.pop("pattern", None)
        out.pop("anyOf", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string", "pattern": pattern or ".*"}]
    if out.get("exclusiveMinimum") is True:
        out["exclusiveMinimum"] = out.pop("minimum")
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def test_the_crd_itself_is_a_valid_apiextensions_object() -> None:
    for version in ("1.28.0", "1.33.0"):
        validate(load_crd(), version, strict=True)


def test_every_field_is_described_for_kubectl_explain() -> None:
    missing = [
        path
        for path, node in _walk(schema(), "")
        if "description" not in node and path not in ("", ".metadata") and not path.endswith("{}")
    ]
    assert missing == []


def test_every_node_is_typed_as_a_structural_schema_requires() -> None:
    untyped = [
        path
        for path, node in _walk(schema(), "")
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    assert untyped == []


def test_scale_subresource_and_short_name() -> None:
    crd = load_crd()
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["wp"]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Workers", "Ready", "Memory", "Spill", "Spill-Size", "Phase", "Age"]


def test_defaults_fill_nested_objects() -> None:
    body = apply_defaults(pool_body())
    spec = body["spec"]
    assert spec["replicas"] == 2
    assert spec["worker"]["memoryLimit"] == "2Gi"
    assert spec["worker"]["thresholds"] == {
        "target": 0.6,
        "spill": 0.7,
        "pause": 0.8,
        "terminate": 0.95,
    }
    assert spec["worker"]["spill"]["medium"] == "Disk"
    assert spec["replication"]["factor"] == 1


def test_defaults_leave_an_explicit_null_alone() -> None:
    body = apply_defaults(pool_body(worker={"thresholds": {"target": None}}))
    assert body["spec"]["worker"]["thresholds"]["target"] is None
    assert body["spec"]["worker"]["thresholds"]["spill"] == 0.7


def test_example_passes_the_schema(example: dict[str, Any]) -> None:
    jsonschema.validate(apply_defaults(example), to_jsonschema(schema()))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "replicas"), -1),
        (("spec", "worker", "memoryLimit"), "4 gigs"),
        (("spec", "worker", "thresholds", "pause"), 1.5),
        (("spec", "worker", "spill", "medium"), "Floppy"),
        (("spec", "worker", "cpu"), "2Gi"),
        (("spec", "replication", "factor"), 0),
    ],
)
def test_schema_refuses_bad_values(
    example: dict[str, Any], path: tuple[str, ...], value: Any
) -> None:
    body = apply_defaults(example)
    node = body
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(body, to_jsonschema(schema()))


def _rules(path: str) -> list[dict[str, Any]]:
    node = schema()
    for key in path.split("."):
        node = node["properties"][key]
    rules: list[dict[str, Any]] = node["x-kubernetes-validations"]
    return rules


def _cel(rule: str, value: Any) -> bool:
    env = celpy.Environment()
    return bool(env.program(env.compile(rule)).evaluate({"self": json_to_cel(value)}))


@pytest.mark.parametrize(
    ("thresholds", "ok"),
    [
        ({"target": 0.6, "spill": 0.7, "pause": 0.8, "terminate": 0.95}, True),
        ({"target": 0.75, "spill": 0.7, "pause": 0.8, "terminate": 0.95}, False),
        ({"target": 0.6, "spill": 0.7, "pause": 0.96, "terminate": 0.95}, False),
        ({"target": 0.6, "spill": None, "pause": 0.8, "terminate": 0.95}, True),
        ({"target": 0.9, "spill": None, "pause": 0.8, "terminate": None}, False),
        ({"target": None, "spill": None, "pause": None, "terminate": None}, True),
    ],
)
def test_cel_orders_thresholds_skipping_disabled_ones(thresholds: dict[str, Any], ok: bool) -> None:
    (rule,) = _rules("spec.worker.thresholds")
    assert _cel(rule["rule"], thresholds) is ok


@pytest.mark.parametrize(
    ("replicas", "factor", "ok"), [(2, 2, True), (1, 2, False), (0, 2, True), (4, 1, True)]
)
def test_cel_keeps_the_replication_factor_within_replicas(
    replicas: int, factor: int, ok: bool
) -> None:
    (rule,) = _rules("spec")
    spec = {"replicas": replicas, "replication": {"factor": factor}}
    assert _cel(rule["rule"], copy.deepcopy(spec)) is ok
