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

{{/*
Cluster-scoped reads kopf itself makes: it watches CRDs to notice its resource appear or
go, and, when given a namespace list, watches namespaces to notice them appear or go.
Read-only; names and schemas only, no contents of any namespace.
*/}}
{{- define "memkube.observerRules" -}}
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- if not .Values.watch.allNamespaces }}
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- end }}
{{- end }}
