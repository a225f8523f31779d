"""The WorkerPool CRD file and what can be done with its schema offline.

:func:`load_crd` reads ``crds/workerpools.memkube.dev.yaml`` (the one source of truth),
:func:`apply_defaults` fills a WorkerPool the way the API server does before storing it, so
``memkube operator render`` sees the same spec the operator will.

Not covered: CEL rules and pruning (the API server's job; tests check the rules with
cel-python) and semantic checks the schema cannot express (:mod:`spec`).
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml

GROUP = "memkube.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "WorkerPool"
PLURAL = "workerpools"
CRD_PATH = Path(__file__).parent / "crds" / f"{PLURAL}.{GROUP}.yaml"


@cache
def _parsed_crd() -> dict[str, Any]:
    """The CRD parsed once (YAML parsing costs more than the rest of a reconcile pass)."""
    crd: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text(encoding="utf-8"))
    return crd


@cache
def _served_schema() -> dict[str, Any]:
    for version in _parsed_crd()["spec"]["versions"]:
        if version["name"] == VERSION:
            found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return found
    raise LookupError(f"{VERSION} missing from {CRD_PATH}")


def load_crd() -> dict[str, Any]:
    """A fresh copy of the CustomResourceDefinition manifest."""
    return copy.deepcopy(_parsed_crd())


def schema() -> dict[str, Any]:
    """A fresh copy of the ``openAPIV3Schema`` of the served version."""
    return copy.deepcopy(_served_schema())


def apply_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with every schema default filled in, outermost first.

    As the API server does: a default applies where the field is absent (not where it is
    null), and defaults inside a defaulted object apply too (``worker: {}`` gains
    ``memoryLimit``).
    """
    result = copy.deepcopy(obj)
    _default_into(result, _served_schema())  # read-only use: no copy needed
    return result


def _default_into(value: Any, node: dict[str, Any]) -> None:
    if isinstance(value, dict):
        properties: dict[str, Any] = node.get("properties", {})
        for name, child in properties.items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                _default_into(value[name], child)
    elif isinstance(value, list) and "items" in node:
        for item in value:
            _default_into(item, node["items"])
