"""values.schema.json refuses bad values, both when Helm installs and for any JSON Schema tool
(editors, CI linters), and accepts values.yaml and every value set users install with."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml
from chartcases import CHART, INVALID, REFUSED, VALID

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())


def _merged(overrides: dict[str, Any]) -> dict[str, Any]:
    """values.yaml with overrides merged in, as Helm merges -f/--set values."""

    def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        for key, value in extra.items():
            if value is None:
                base.pop(key, None)
            elif isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    return merge(copy.deepcopy(DEFAULTS), overrides)


def test_schema_is_a_valid_draft7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("case", VALID)
def test_schema_accepts_supported_values(case: str) -> None:
    jsonschema.validate(_merged(VALID[case]), SCHEMA)


@pytest.mark.parametrize("case", INVALID)
def test_helm_refuses_invalid_values(helm_results: dict[str, Any], case: str) -> None:
    _, pointer = INVALID[case]
    error = helm_results[case].get("error", "")
    assert "values don't meet the specifications of the schema" in error
    assert pointer in error


@pytest.mark.parametrize("case", REFUSED)
def test_templates_refuse_inconsistent_values(helm_results: dict[str, Any], case: str) -> None:
    _, message = REFUSED[case]
    assert message in helm_results[case].get("error", "")


@pytest.mark.parametrize("case", INVALID)
def test_jsonschema_refuses_invalid_values(case: str) -> None:
    overrides, pointer = INVALID[case]
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(_merged(overrides)))
    assert errors
    # The offending place is named in the error's path, or (missing/extra keys) its message.
    places = ["/" + "/".join(map(str, e.absolute_path)) + " " + e.message for e in errors]
    assert any(pointer in place for place in places), places


def test_every_default_has_a_schema_entry() -> None:
    """A value added to values.yaml without a schema entry is refused, not silently accepted."""

    def walk(values: dict[str, Any], schema: dict[str, Any], path: str) -> None:
        assert schema.get("additionalProperties") is False or "additionalProperties" in schema, path
        for key, value in values.items():
            props = schema.get("properties", {})
            assert key in props or isinstance(schema.get("additionalProperties"), dict), (
                f"{path}/{key}"
            )
            sub = props.get(key, {})
            if isinstance(value, dict) and sub.get("properties"):
                walk(value, sub, f"{path}/{key}")

    walk(DEFAULTS, SCHEMA, "")
