"""apidouble: a Kubernetes API server test double, faithful to the API conventions memkube uses.

Start one per test (plain HTTP on 127.0.0.1, a free port)::

    from apidouble import ApiDouble

    async with ApiDouble() as api:          # in the test's event loop
        api.url                             # "http://127.0.0.1:PORT"
        api.kubeconfig_path                 # kubeconfig for kubectl / kubernetes / kopf clients
        ...

    with ApiDouble.run_in_thread() as api:  # on its own loop in a thread (kubectl, sync tests,
        subprocess.run(["kubectl", "--kubeconfig", str(api.kubeconfig_path), "get", "pods"])

kopf in-process::

    @kopf.on.login()
    def login(**_):
        return kopf.ConnectionInfo(server=api.url, scheme="Bearer", token="apidouble-token")

Direct access from tests (no HTTP, not in the request log; thread-safe)::

    api.get_object(group, version, plural, namespace, name) -> dict | None
    api.objects(group, version, plural, namespace=None) -> list[dict]
    api.create_object(manifest)             # as a POST would (defaults, validation, events)
    api.apply_manifests(path_or_yaml_text)  # create every document, CRDs first
    api.patch_object(group, version, plural, ns, name, merge_patch, subresource="status")
    api.delete_object(group, version, plural, ns, name, propagation=None)
    await api.wait_for(group, version, plural, ns, name, predicate, timeout=10)
    api.wait_for_sync(...)                  # same, for a thread-run double
    api.mark_pods_ready(namespace, selector="")   # kubelet stand-in: Running, Ready, podIP
    api.set_oom_killed(namespace, pod, container=None)  # lastState OOMKilled, restartCount+1
    api.finish_pod_terminations(namespace, selector="")  # with ApiDouble(graceful_pods=True)
    api.requests                            # RequestLog of RequestRecord dicts:
                                            # verb (RBAC), apiGroup, resource, subresource,
                                            # namespace, name, method, path, query, code;
                                            # api.requests.permissions() -> {(group, res, verb)}
                                            # api.requests.wait_for(predicate) (blocking)
    api.compact()                           # forget history: old watches get 410 Gone
    api.resource_version                    # the current (global) resourceVersion

Helpers for raw-HTTP and kubectl tests (``apidouble.testing``)::

    http = Http(aiohttp_session, api.url)   # (status, body) = await http.get/post/put/patch/
                                            # delete(path, ...); await http.watch(path, q, n)
    kubectl = Kubectl(api, cache_dir)       # kubectl("get", "wp") -> CompletedProcess

What it serves (``/api/v1``, ``/apis/{group}/{version}``, discovery, ``/version``,
``/openapi/v3``): namespaces, pods, services, secrets, configmaps, events (core/v1 and
events.k8s.io/v1, one store), serviceaccounts, persistentvolumeclaims, nodes, deployments
(+scale), networkpolicies, poddisruptionbudgets, RBAC roles and bindings, leases, CRDs, and
every custom resource once its CRD is stored (namespaced or cluster-scoped, every served
version). A CRD never shadows a built-in kind.

Semantics, after the Kubernetes API conventions:

- One global resourceVersion; lists return it; a watch from rv N sends only later changes;
  without rv (or "0") it starts with ADDED for what exists; ``allowWatchBookmarks`` sends
  BOOKMARKs every ``bookmark_interval`` seconds; ``timeoutSeconds`` ends the stream;
  410 Gone (as an ERROR event) after ``compact()``. Selectors on watches turn objects that
  start/stop matching into ADDED/DELETED.
- list: labelSelector (=, ==, !=, in, notin, exists, !exists), fieldSelector
  (metadata.name/namespace and per-kind fields, 400 for others), limit/continue.
- create: generateName, uid, creationTimestamp, resourceVersion, generation (custom
  resources, deployments, CRDs), 409 AlreadyExists, 404 for a missing namespace, 403 in a
  terminating one, RFC 1123 name validation, a ``default`` ServiceAccount per namespace.
- update (PUT): 409 Conflict on a stale resourceVersion; custom resources require one.
  No-op writes change nothing (no new rv, no event).
- patch: merge-patch, json-patch, strategic-merge (built-ins only; 415 for custom
  resources, as a real server), apply-patch (approximation: create-or-merge, no field
  ownership). A resourceVersion in the patch is a precondition.
- status subresource: ``/status`` writes change only status; the main endpoint ignores status
  changes; generation moves only on non-metadata, non-status changes.
- scale subresource (CRD ``subresources.scale``, deployments): autoscaling/v1 Scale.
- delete: finalizers -> deletionTimestamp (the object goes when its finalizers are gone; none
  may be added meanwhile); propagationPolicy Background (default) / Foreground
  (``foregroundDeletion``, waits for ``blockOwnerDeletion`` dependents) / Orphan;
  owner-reference garbage collection runs synchronously (also for a dependent written with
  absent owners: wrong uid or another namespace, as a real GC would); deletecollection; namespaces and
  CRDs take their content with them. Pods go at once, or with ``graceful_pods=True`` a pod
  on a node stays Terminating until ``finish_pod_terminations`` (``gracePeriodSeconds=0``
  forces).
- CRDs must be structural (types everywhere, items for arrays, no $ref, defaults that
  validate, CEL rules that compile, parseable printer-column paths), else 422.
- custom resources: pruning of unknown fields (unless x-kubernetes-preserve-unknown-fields),
  ``default``s (on write and on read), nullable, list-type set/map uniqueness, jsonschema validation and CEL ``x-kubernetes-validations``
  (cel-python) -> 422 Invalid with ``details.causes[].field``; ``?fieldValidation=Strict``
  turns unknown fields into 400 (as kubectl's default ``--validate=strict``).
- Tables for ``Accept: application/json;as=Table;v=v1;g=meta.k8s.io``: printer columns of
  CRDs, pods (Ready/Status/Restarts/Age), Name/Age for other built-ins.
- built-in kinds are checked against the Kubernetes 1.32 JSON schemas shipped by
  ``kubernetes-validate``: unknown fields dropped (400 with ``fieldValidation=Strict``),
  wrong types or missing required fields 422. Every kind gets ObjectMeta checks: label
  keys/values (63 characters), annotation keys, ownerReferences fields, one controller.
  Pods (and deployment templates): containers with unique names and images, ports in range,
  quantities that parse (``4GB`` is a 400, as on a server) and requests <= limits (422).
  Updates may not change immutable fields: pod specs (but images, tolerations added, the
  first nodeName), deployment selectors, service clusterIPs, PVC specs, ``immutable``
  ConfigMaps/Secrets.
- bodies: JSON (also without a Content-Type), YAML for apply, and protobuf for the kinds
  ``kubectl create <generator>`` sends (namespace, configmap, secret, serviceaccount, RBAC);
  other protobuf bodies get 415, as an unsupported media type would.
- Errors are ``kind: Status`` with reason NotFound, AlreadyExists, Conflict, Invalid,
  BadRequest, Forbidden, MethodNotAllowed, UnsupportedMediaType, Expired.
- Addresses: service clusterIPs and pod IPs are loopback (127.0.2.x, 127.0.1.x), so nothing
  that dials them leaves the machine.

Not covered: authentication/authorization (any token works; check RBAC with the request
log), admission webhooks, conversion webhooks, controllers (no Deployment -> Pod; a test
plays the kubelet with ``mark_pods_ready``), OpenAPI v2, aggregated discovery, server-side
apply field ownership, consistent snapshots for
paginated lists, the per-kind validation rules beyond the schemas (immutable fields, ...).
"""

from .double import ApiDouble
from .errors import ApiError
from .registry import Registry
from .requestlog import RequestLog, RequestRecord

__all__ = ["ApiDouble", "ApiError", "Registry", "RequestLog", "RequestRecord"]
