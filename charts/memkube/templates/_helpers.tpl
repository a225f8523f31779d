{{/*
Names, labels and the few facts every template shares. The pool-side labels and ports
(memkube.poolPodSelector, the ports and port names) must match what the operator puts on
the pods and Services it creates; tests/chart/test_chart_pools.py checks them against the
operator's own builders.
*/}}

{{- define "memkube.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "memkube.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "memkube.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that identify the operator's pods; they never change after install. */}}
{{- define "memkube.selectorLabels" -}}
app.kubernetes.io/name: {{ include "memkube.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "memkube.labels" -}}
helm.sh/chart: {{ include "memkube.chart" . }}
{{ include "memkube.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: memkube
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "memkube.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "memkube.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "memkube.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The namespaces the operator watches when it does not watch them all. */}}
{{- define "memkube.watchedNamespaces" -}}
{{- if .Values.watch.namespaces }}
{{- toJson .Values.watch.namespaces }}
{{- else }}
{{- toJson (list .Release.Namespace) }}
{{- end }}
{{- end }}

{{/* Namespaces that get the pool NetworkPolicy. */}}
{{- define "memkube.policyNamespaces" -}}
{{- if .Values.networkPolicy.namespaces }}
{{- toJson .Values.networkPolicy.namespaces }}
{{- else if .Values.watch.allNamespaces }}
{{- toJson (list .Release.Namespace) }}
{{- else }}
{{- include "memkube.watchedNamespaces" . }}
{{- end }}
{{- end }}

{{/* Labels the operator puts on every scheduler and worker pod it creates. */}}
{{- define "memkube.poolPodSelector" -}}
matchExpressions:
  - key: app.kubernetes.io/component
    operator: In
    values: [scheduler, worker]
  - key: memkube.dev/pool
    operator: Exists
{{- end }}

{{- define "memkube.schedulerPort" -}}8786{{- end }}
{{- define "memkube.workerPort" -}}8788{{- end }}
{{/* Port names: the scheduler Service's port, and the worker container's port. */}}
{{- define "memkube.schedulerServicePortName" -}}memkube{{- end }}
{{- define "memkube.workerPortName" -}}worker{{- end }}

{{/*
The Secret (release namespace) holding the token that opens only GET /metrics, as JSON
{name, key}, or {} when no enabled monitor names one. The operator copies it into every new
pool's Secret, so both monitors must use the same one.
*/}}
{{- define "memkube.metricsTokenSecret" -}}
{{- $found := dict }}
{{- range $kind := list "serviceMonitor" "podMonitor" }}
{{- $monitor := index $.Values.metrics $kind }}
{{- if and $monitor.enabled $monitor.tokenSecret $monitor.tokenSecret.name }}
{{- $ref := dict "name" $monitor.tokenSecret.name "key" $monitor.tokenSecret.key }}
{{- if and $found (ne (toJson $found) (toJson $ref)) }}
{{- fail "metrics.serviceMonitor.tokenSecret and metrics.podMonitor.tokenSecret must name the same Secret and key: the operator gives pools one metrics token" }}
{{- end }}
{{- $found = $ref }}
{{- end }}
{{- end }}
{{- toJson $found }}
{{- end }}
