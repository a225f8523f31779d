"""Custom resources against their CRD schema: pruning, defaults, validation, CEL."""

from __future__ import annotations

from typing import Any

from apidouble import ApiDouble
from apidouble.structural import normalize
from apidouble.testing import Http
from apidouble.validation import validate

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"spec": {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "default": 3},
            "nested": {"type": "object", "default": {},
                       "properties": {"x": {"type": "string", "default": "dx"}}},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "items": {"type": "array", "items": {
                "type": "object", "properties": {"k": {"type": "string", "default": "dk"}}}},
            "maybe": {"type": "string", "nullable": True},
            "plain": {"type": "string", "default": "p"},
            "port": {"x-kubernetes-int-or-string": True},
        }}},
}


def _cr(spec: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "t/v1", "kind": "T", "metadata": {"name": "n"}, "spec": spec,
            **extra}


def test_defaults_fill_missing_fields_at_every_level() -> None:
    out = normalize(_cr({"items": [{}, {"k": "set"}]}), SCHEMA)
    assert out["spec"] == {"n": 3, "nested": {"x": "dx"}, "plain": "p",
                           "items": [{"k": "dk"}, {"k": "set"}]}


def test_unknown_fields_are_pruned_unless_preserved() -> None:
    unknown: list[str] = []
    out = normalize(_cr({"n": 1, "bogus": 1, "free": {"any": {"thing": 1}},
                         "nested": {"x": "a", "y": "b"}}, top="level",
                        metadata={"name": "n", "junk": 1}), SCHEMA, unknown)
    assert "bogus" not in out["spec"] and "top" not in out
    assert out["spec"]["free"] == {"any": {"thing": 1}}
    assert out["spec"]["nested"] == {"x": "a"}
    assert "junk" not in out["metadata"]
    assert sorted(unknown) == ["metadata.junk", "spec.bogus", "spec.nested.y", "top"]


def test_null_is_dropped_then_defaulted_unless_nullable() -> None:
    out = normalize(_cr({"plain": None, "maybe": None}), SCHEMA)
    assert out["spec"]["plain"] == "p" and out["spec"]["maybe"] is None


def test_int_or_string_accepts_both() -> None:
    assert validate(_cr({"port": 80}), SCHEMA) == []
    assert validate(_cr({"port": "http"}), SCHEMA) == []
    assert validate(_cr({"port": 1.5}), SCHEMA) != []


async def _create(http: Http, widgets: str, spec: dict[str, Any],
                  **params: str) -> tuple[int, Any]:
    return await http.post(widgets, {"apiVersion": "example.test/v1", "kind": "Widget",
                                     "metadata": {"name": "w"}, "spec": spec},
                           params=params or None)


async def test_server_applies_defaults_and_prunes(http: Http, widgets: str) -> None:
    status, w = await _create(http, widgets, {"size": "2Gi", "bogus": True,
                                              "extra": {"anything": [1, 2]}})
    assert status == 201, w
    assert w["spec"] == {"size": "2Gi", "replicas": 1, "color": "red",
                         "limits": {"cpu": "1"}, "extra": {"anything": [1, 2]}}


async def test_strict_field_validation_rejects_unknown_fields(http: Http, widgets: str) -> None:
    status, body = await _create(http, widgets, {"size": "2Gi", "bogus": True},
                                 fieldValidation="Strict")
    assert status == 400 and body["reason"] == "BadRequest"
    assert 'unknown field "spec.bogus"' in body["message"]


def _causes(body: dict[str, Any]) -> dict[str, str]:
    return {c["field"]: c["reason"] for c in body["details"]["causes"]}


async def test_invalid_values_name_the_field(http: Http, widgets: str) -> None:
    status, body = await _create(http, widgets, {"size": "2Gi", "replicas": "three"})
    assert status == 422 and body["reason"] == "Invalid" and body["kind"] == "Status"
    assert _causes(body) == {"spec.replicas": "FieldValueInvalid"}
    assert body["details"] == {**body["details"], "name": "w", "group": "example.test",
                               "kind": "Widget"}
    assert body["message"].startswith('Widget.example.test "w" is invalid: spec.replicas: ')
    status, body = await _create(http, widgets, {"size": "2Gi", "replicas": -1})
    assert _causes(body) == {"spec.replicas": "FieldValueInvalid"}
    assert "greater than or equal to 0" in body["message"]
    status, body = await _create(http, widgets, {"size": "2Gi", "color": "green"})
    assert _causes(body) == {"spec.color": "FieldValueNotSupported"}
    assert 'supported values: "red", "blue"' in body["message"]
    status, body = await _create(http, widgets, {})
    assert _causes(body) == {"spec.size": "FieldValueRequired"}
    status, body = await _create(http, widgets, {"size": "2GB"})
    assert _causes(body) == {"spec.size": "FieldValueInvalid"}
    status, body = await _create(http, widgets, {"size": "2Gi", "labels": {"a": 1}})
    assert _causes(body) == {"spec.labels.a": "FieldValueInvalid"}


async def test_cel_rules(http: Http, widgets: str) -> None:
    status, body = await _create(http, widgets, {"size": "2Gi", "replicas": 11})
    assert status == 422
    assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "spec",
                                          "message": 'Invalid value: "object": '
                                                     'at most ten widgets'}]
    assert body["message"] == ('Widget.example.test "w" is invalid: spec: Invalid value: '
                               '"object": at most ten widgets')


async def test_cel_transition_rule_runs_on_update_only(http: Http, widgets: str) -> None:
    status, _ = await _create(http, widgets, {"size": "2Gi"})
    assert status == 201
    status, body = await http.patch(f"{widgets}/w", {"spec": {"size": "4Gi"}})
    assert status == 422 and "size is immutable" in body["message"]
    status, _ = await http.patch(f"{widgets}/w", {"spec": {"replicas": 2}})
    assert status == 200


async def test_validation_also_guards_status_writes(http: Http, widgets: str) -> None:
    await _create(http, widgets, {"size": "2Gi"})
    status, body = await http.patch(f"{widgets}/w/status", {"status": {"replicas": "x"}})
    assert status == 422 and _causes(body) == {"status.replicas": "FieldValueInvalid"}


CRDS = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"


def _crd_with(widgets_crd: dict[str, Any], spec_schema: dict[str, Any]) -> dict[str, Any]:
    widgets_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][
        "spec"] = spec_schema
    return widgets_crd


async def test_crd_schema_must_be_structural(http: Http, widgets_crd: dict[str, Any]) -> None:
    bad = {"type": "object", "properties": {
        "untyped": {"description": "no type"},
        "list": {"type": "array"},
        "both": {"type": "object", "properties": {"a": {"type": "string"}},
                 "additionalProperties": {"type": "string"}},
        "ref": {"type": "object", "$ref": "#/definitions/x"},
        "n": {"type": "integer", "default": "three"},
        "pairs": {"type": "array", "x-kubernetes-list-type": "map",
                  "items": {"type": "object"}},
    }, "x-kubernetes-validations": [{"rule": "self.replicas >"}]}
    status, body = await http.post(CRDS, _crd_with(widgets_crd, bad))
    assert status == 422 and body["reason"] == "Invalid"
    base = "spec.versions[0].schema.openAPIV3Schema.properties[spec]"
    fields = {c["field"] for c in body["details"]["causes"]}
    assert fields == {f"{base}.properties[untyped].type", f"{base}.properties[list].items",
                      f"{base}.properties[both].additionalProperties",
                      f"{base}.properties[ref].$ref", f"{base}.properties[n].default",
                      f"{base}.properties[pairs].x-kubernetes-list-map-keys",
                      f"{base}.x-kubernetes-validations[0].rule"}


async def test_crd_printer_column_paths_must_parse(http: Http,
                                                   widgets_crd: dict[str, Any]) -> None:
    widgets_crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] = "spec[["
    status, body = await http.post(CRDS, widgets_crd)
    assert status == 422
    assert body["details"]["causes"][0]["field"] == \
        "spec.versions[0].additionalPrinterColumns[0].jsonPath"


async def test_list_type_set_and_map_reject_duplicates(http: Http,
                                                       widgets_crd: dict[str, Any]) -> None:
    spec = {"type": "object", "properties": {
        "tags": {"type": "array", "x-kubernetes-list-type": "set",
                 "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map",
                  "x-kubernetes-list-map-keys": ["name"],
                  "items": {"type": "object", "properties": {"name": {"type": "string"},
                                                             "port": {"type": "integer"}}}}}}
    assert (await http.post(CRDS, _crd_with(widgets_crd, spec)))[0] == 201
    widgets = "/apis/example.test/v1/namespaces/default/widgets"
    status, body = await http.post(widgets, {"metadata": {"name": "w"}, "spec": {
        "tags": ["a", "b", "a"],
        "ports": [{"name": "http", "port": 80}, {"name": "http", "port": 81}]}})
    assert status == 422
    assert {(c["field"], c["reason"]) for c in body["details"]["causes"]} == {
        ("spec.tags[2]", "FieldValueDuplicate"), ("spec.ports[1]", "FieldValueDuplicate")}


async def test_defaults_added_to_a_crd_show_on_existing_objects(
        api: ApiDouble, http: Http, widgets_crd: dict[str, Any]) -> None:
    api.create_object(widgets_crd)
    widgets = "/apis/example.test/v1/namespaces/default/widgets"
    await http.post(widgets, {"metadata": {"name": "w"}, "spec": {"size": "1Gi"}})
    spec = widgets_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec["properties"]["zone"] = {"type": "string", "default": "eu"}
    _, stored = await http.get(f"{CRDS}/widgets.example.test")
    widgets_crd["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"]
    status, _ = await http.put(f"{CRDS}/widgets.example.test", widgets_crd)
    assert status == 200
    _, w = await http.get(f"{widgets}/w")
    assert w["spec"]["zone"] == "eu"


def test_boolean_exclusive_bounds_of_openapi_3_0() -> None:
    schema: dict[str, Any] = {"type": "object", "properties": {"spec": {
        "type": "object", "properties": {
            "f": {"type": "number", "minimum": 0, "exclusiveMinimum": True,
                  "maximum": 1, "exclusiveMaximum": False}}}}}
    assert validate(_cr({"f": 0.6}), schema) == []
    assert validate(_cr({"f": 1}), schema) == []
    [cause] = validate(_cr({"f": 0}), schema)
    assert cause["field"] == "spec.f" and "greater than 0" in cause["message"]
