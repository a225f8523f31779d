"""The GitHub workflow runs what this repository promises: the suite, then the kind tier."""

from __future__ import annotations

from typing import Any

import yaml
from chartcases import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_workflow_runs_the_suite_then_the_kind_tier() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    jobs = workflow["jobs"]
    assert "make test" in _runs(jobs["tests"]) and "make lint" in _runs(jobs["tests"])
    kind = jobs["kind-e2e"]
    assert kind["needs"] == "tests"
    assert "pytest tests/e2e_kind --kind" in _runs(kind)
    uses = {step.get("uses", "").split("@")[0] for step in kind["steps"]}
    assert {"helm/kind-action", "azure/setup-helm", "actions/setup-python"} <= uses
    assert workflow["permissions"] == {"contents": "read"}
