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
def _crd_text() -> str:
    return CRD_PATH.read_text(encoding="utf-8")


def load_crd() -> dict[str, Any]:
    """A fresh copy of the CustomResourceDefinition manifest."""
    crd: dict[str, Any] = yaml.safe_load(_crd_text())
    return crd


def schema() -> dict[str, Any]:
    """The ``openAPIV3Schema`` of the served version."""
    for version in load_crd()["spec"]["versions"]:
        if version["name"] == VERSION:
            found: dict[str, Any] = version["schema"]["openAPIV3Schema"]
            return found
    raise LookupError(f"{VERSION} missing from {CRD_PATH}")


def apply_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``obj`` with every schema default filled in, outermost first.

    As the API server does: a default applies where the field is absent (not where it is
    null), and defaults inside a defaulted object apply too (``worker: {}`` gains
    ``memoryLimit``).
    """
    result = copy.deepcopy(obj)
    _default_into(result, schema())
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
