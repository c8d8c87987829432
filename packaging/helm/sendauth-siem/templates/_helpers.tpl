{{/*
Names and labels.

Every helper here takes a context with .Values (this chart's values) and .Release only, never
.Chart: a parent chart calls the sidecar templates (_sidecar.tpl) with
(dict "Values" (index .Values "sendauth-siem") "Release" .Release), and they must compute the
same object names as this chart's own templates do. That is why the chart name is spelled out
instead of read from .Chart.Name.
*/}}

{{- define "sendauth-siem.name" -}}
{{- default "sendauth-siem" .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sendauth-siem.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "sendauth-siem.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sendauth-siem.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sendauth-siem.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sendauth-siem.labels" -}}
{{ include "sendauth-siem.selectorLabels" . }}
app.kubernetes.io/component: siem-forwarder
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.image.tag }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels of the pods that run the agent: ours (standalone) or the auth server's (sidecar). */}}
{{- define "sendauth-siem.podSelector" -}}
{{- if eq .Values.mode "sidecar" }}
{{- if not .Values.sidecar.podSelector }}
{{- fail "mode: sidecar needs sidecar.podSelector: the labels of your auth-server pods (the Service, PodMonitor and NetworkPolicy select them)" }}
{{- end }}
{{- toYaml .Values.sidecar.podSelector }}
{{- else }}
{{- include "sendauth-siem.selectorLabels" . }}
{{- end }}
{{- end }}

{{- define "sendauth-siem.configMapName" -}}
{{- printf "%s-config" (include "sendauth-siem.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sendauth-siem.secretName" -}}
{{- default (include "sendauth-siem.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "sendauth-siem.claimName" -}}
{{- default (printf "%s-queue" (include "sendauth-siem.fullname" .) | trunc 63 | trimSuffix "-") .Values.persistence.existingClaim }}
{{- end }}

{{- define "sendauth-siem.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (required "image.tag is empty and no default was set" .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The agent's config.yaml: .Values.config with the two keys the chart owns set (queue.path, the
queue volume's mount; status.listen, where the probes and the Service connect).
*/}}
{{- define "sendauth-siem.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) }}
{{- $queue := get $cfg "queue" | default dict }}
{{- $_ := set $queue "path" "/var/lib/sendauth-siem" }}
{{- $_ = set $cfg "queue" $queue }}
{{- $status := get $cfg "status" | default dict }}
{{- $_ = set $status "listen" (printf "0.0.0.0:%d" (int .Values.status.port)) }}
{{- $_ = set $cfg "status" $status }}
{{- toYaml $cfg }}
{{- end }}

{{/* A digest of the Secret the chart creates, for a pod annotation that rolls the pod when it changes. */}}
{{- define "sendauth-siem.secretChecksum" -}}
{{- dict "token" .Values.secret.token "extra" .Values.secret.extraData "key" .Values.secret.tokenKey | toJson | sha256sum }}
{{- end }}
