"""kubectl 1.32 used as a person would, against a thread-run double."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import pytest
from apidouble import ApiDouble
from apidouble.testing import Kubectl

ROOT = Path(__file__).resolve().parents[2]
WIDGETS_CRD = Path(__file__).parent / "widgets-crd.yaml"
MEMKUBE_CRD = ROOT / "operator" / "memkube_operator" / "crds" / "workerpools.memkube.dev.yaml"
EXAMPLE = ROOT / "examples" / "workerpool.yaml"

WIDGET = """\
apiVersion: example.test/v1
kind: Widget
metadata:
  name: w1
  labels: {{app: demo}}
spec:
  size: 2Gi
  replicas: {replicas}
"""


def _apply(kubectl: Kubectl, text: str, check: bool = True) -> str:
    done = kubectl("apply", "-f", "-", stdin=text, check=check)
    return done.stdout + done.stderr


def test_apply_get_scale_delete_a_custom_resource(kubectl: Kubectl) -> None:
    api = kubectl.api
    assert "created" in kubectl("apply", "-f", str(WIDGETS_CRD)).stdout
    assert "widget.example.test/w1 created" in _apply(kubectl, WIDGET.format(replicas=2))
    stored = api.get_object("example.test", "v1", "widgets", "default", "w1")
    assert stored is not None
    annotation = stored["metadata"]["annotations"][
        "kubectl.kubernetes.io/last-applied-configuration"]
    assert json.loads(annotation)["spec"]["replicas"] == 2

    lines = kubectl("get", "wd").stdout.splitlines()
    assert lines[0].split() == ["NAME", "REPLICAS", "COLOR", "READY", "AGE"]
    # A column without a value is a null cell, which kubectl prints as blank.
    assert lines[1].split()[:3] == ["w1", "2", "red"] and len(lines[1].split()) == 4

    assert "configured" in _apply(kubectl, WIDGET.format(replicas=3))
    assert "unchanged" in _apply(kubectl, WIDGET.format(replicas=3))
    stored = api.get_object("example.test", "v1", "widgets", "default", "w1")
    assert stored is not None and stored["spec"]["replicas"] == 3
    assert stored["metadata"]["generation"] == 2

    assert "scaled" in kubectl("scale", "wd/w1", "--replicas=5").stdout
    assert kubectl("get", "widget", "w1", "-o", "jsonpath={.spec.replicas}").stdout == "5"

    assert 'deleted' in kubectl("delete", "widgets.example.test", "w1").stdout
    assert api.get_object("example.test", "v1", "widgets", "default", "w1") is None
    assert "No resources found" in kubectl("get", "wd").stderr


def test_server_side_validation_errors_reach_the_user(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(WIDGETS_CRD))
    out = _apply(kubectl, WIDGET.format(replicas=11), check=False)
    assert 'The Widget "w1" is invalid: spec: Invalid value: "object": at most ten widgets' \
        in out
    out = _apply(kubectl, WIDGET.format(replicas=1) + "  bogus: 1\n", check=False)
    assert 'strict decoding error: unknown field "spec.bogus"' in out
    # With validation off, kubectl does not ask for strictness and the field is pruned.
    kubectl("apply", "--validate=false", "-f", "-",
            stdin=WIDGET.format(replicas=1) + "  bogus: 1\n")
    stored = kubectl.api.get_object("example.test", "v1", "widgets", "default", "w1")
    assert stored is not None and "bogus" not in stored["spec"]


def test_delete_waits_for_finalizers(kubectl: Kubectl) -> None:
    api = kubectl.api
    api.create_object({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "held", "namespace": "default",
                                    "finalizers": ["example.test/hold"]}})

    def controller() -> None:
        # Plays the finalizer's owner: releases the object once deletion has started.
        api.wait_for_sync("", "v1", "configmaps", "default", "held",
                          lambda o: bool(o and o["metadata"].get("deletionTimestamp")))
        api.patch_object("", "v1", "configmaps", "default", "held",
                         {"metadata": {"finalizers": None}})

    thread = threading.Thread(target=controller, daemon=True)
    thread.start()
    done = kubectl("delete", "configmap", "held", "--timeout=20s")
    thread.join(5)
    assert 'configmap "held" deleted' in done.stdout
    assert api.get_object("", "v1", "configmaps", "default", "held") is None


def test_get_pods_by_label(kubectl: Kubectl) -> None:
    api = kubectl.api
    for name, role in (("w-0", "worker"), ("w-1", "worker"), ("s-0", "scheduler")):
        api.create_object({"apiVersion": "v1", "kind": "Pod",
                           "metadata": {"name": name, "namespace": "default",
                                        "labels": {"role": role}},
                           "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    api.mark_pods_ready("default", "role=worker")
    out = kubectl("get", "pods", "-l", "role=worker").stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [line.split()[:3] for line in out[1:]] == [["w-0", "1/1", "Running"],
                                                      ["w-1", "1/1", "Running"]]
    names = kubectl("get", "pods", "-l", "role in (scheduler)", "-o", "name").stdout
    assert names.split() == ["pod/s-0"]
    listed = json.loads(kubectl("get", "pods", "-o", "json").stdout)
    assert listed["kind"] == "List" and len(listed["items"]) == 3


def test_wait_for_ready_is_woken_by_a_watch(kubectl: Kubectl) -> None:
    api = kubectl.api
    api.create_object({"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"name": "slow", "namespace": "default"},
                       "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    cmd = ["kubectl", "--kubeconfig", str(api.kubeconfig_path), "--cache-dir",
           str(kubectl.cache), "wait", "--for=condition=Ready", "pod/slow", "--timeout=20s"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as waiting:
        api.requests.wait_for(lambda r: r["verb"] == "watch" and r["resource"] == "pods")
        api.mark_pods_ready("default")
        out, err = waiting.communicate(timeout=20)
    assert waiting.returncode == 0, err
    assert "pod/slow condition met" in out


def test_get_watch_prints_table_rows_as_changes_arrive(kubectl: Kubectl) -> None:
    api = kubectl.api
    kubectl("apply", "-f", str(WIDGETS_CRD))
    _apply(kubectl, WIDGET.format(replicas=1))
    cmd = ["kubectl", "--kubeconfig", str(api.kubeconfig_path), "--cache-dir",
           str(kubectl.cache), "get", "wd", "--watch", "--output-watch-events"]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as watching:
        guard = threading.Timer(20, watching.kill)  # a hung read ends with the process
        guard.start()
        try:
            assert watching.stdout is not None
            assert watching.stdout.readline().split()[:3] == ["EVENT", "NAME", "REPLICAS"]
            assert watching.stdout.readline().split()[:3] == ["ADDED", "w1", "1"]
            api.patch_object("example.test", "v1", "widgets", "default", "w1",
                             {"spec": {"replicas": 4}})
            assert watching.stdout.readline().split()[:3] == ["MODIFIED", "w1", "4"]
        finally:
            guard.cancel()
            watching.kill()


def test_create_generators_send_protobuf_that_is_understood(kubectl: Kubectl) -> None:
    api = kubectl.api
    kubectl("create", "namespace", "team")
    kubectl("create", "secret", "generic", "token", "-n", "team", "--from-literal=t=abc")
    kubectl("create", "configmap", "cfg", "-n", "team", "--from-literal=k=v")
    kubectl("create", "serviceaccount", "bot", "-n", "team")
    kubectl("create", "role", "reader", "-n", "team", "--verb=get,list",
            "--resource=pods,deployments.apps")
    kubectl("create", "rolebinding", "bot-reads", "-n", "team", "--role=reader",
            "--serviceaccount=team:bot")
    secret = api.get_object("", "v1", "secrets", "team", "token")
    assert secret is not None and secret["data"] == {"t": "YWJj"}
    cfg = api.get_object("", "v1", "configmaps", "team", "cfg")
    assert cfg is not None and cfg["data"] == {"k": "v"}
    role = api.get_object("rbac.authorization.k8s.io", "v1", "roles", "team", "reader")
    assert role is not None and role["rules"] == [
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]},
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]}]
    binding = api.get_object("rbac.authorization.k8s.io", "v1", "rolebindings", "team",
                             "bot-reads")
    assert binding is not None
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "bot",
                                    "namespace": "team"}]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                  "name": "reader"}
    # Kinds without a protobuf mapping are refused the way a server refuses a media type.
    done = kubectl("create", "deployment", "web", "--image=nginx:1", check=False)
    assert done.returncode != 0 and "unknown format" in done.stderr


def test_explain_reads_the_crd_schema(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(WIDGETS_CRD))
    out = kubectl("explain", "widgets.spec").stdout
    assert "KIND:       Widget" in out and "replicas" in out and "color" in out


def test_kubectl_requests_map_to_rbac_verbs(kubectl: Kubectl) -> None:
    api: ApiDouble = kubectl.api
    kubectl("apply", "-f", str(WIDGETS_CRD))
    api.requests.clear()
    _apply(kubectl, WIDGET.format(replicas=1))
    perms = {p for p in api.requests.permissions() if p[0] == "example.test"}
    assert perms == {("example.test", "widgets", "get"), ("example.test", "widgets", "create")}


@pytest.mark.skipif(not MEMKUBE_CRD.exists() or not EXAMPLE.exists(),
                    reason="the WorkerPool CRD or example is not in the tree yet")
def test_memkube_crd_and_example(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(MEMKUBE_CRD))
    assert "workerpool.memkube.dev/etl created" in kubectl("apply", "-f", str(EXAMPLE)).stdout
    header = kubectl("get", "wp").stdout.splitlines()[0].split()
    assert header[:3] == ["NAME", "WORKERS", "READY"]
    assert "scaled" in kubectl("scale", "wp/etl", "--replicas=6").stdout
    pool = kubectl.api.get_object("memkube.dev", "v1alpha1", "workerpools", "default", "etl")
    assert pool is not None and pool["spec"]["replicas"] == 6
    explained = kubectl("explain", "wp.spec.worker").stdout
    assert "KIND:       WorkerPool" in explained and "memoryLimit" in explained
