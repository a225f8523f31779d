{{/*
The operator's permissions, one rule per resource so that an unused verb stands out.
Shared by the ClusterRole (all namespaces) and the per-namespace Roles.
*/}}
{{- define "memkube.operatorRules" -}}
# WorkerPools: watched by kopf, which keeps its finalizer and progress in annotations.
- apiGroups: [memkube.dev]
  resources: [workerpools]
  verbs: [get, list, watch, patch]
- apiGroups: [memkube.dev]
  resources: [workerpools/status]
  verbs: [patch]
# The pool's children: token Secret, scheduler Service, scheduler and worker Pods.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, create]
- apiGroups: [""]
  resources: [services]
  verbs: [get, create]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch, create, delete]
# Events for OOM kills, retirements and rejected specs.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end }}
