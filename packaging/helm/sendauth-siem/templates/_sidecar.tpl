{{/*
The agent's container and volumes, as named templates.

This chart's Deployment (mode: standalone) uses them, and so does a parent chart that injects
the agent into its own auth-server Deployment (mode: sidecar). The parent passes this chart's
values and its release:

  {{- $siem := dict "Values" (index .Values "sendauth-siem") "Release" .Release }}
  initContainers:
    {{- include "sendauth-siem.sidecar.initContainers" $siem | nindent 4 }}
  containers:
    - name: auth-server
      volumeMounts:
        {{- include "sendauth-siem.sidecar.authServerMounts" $siem | nindent 8 }}
    {{- include "sendauth-siem.sidecar.containers" $siem | nindent 4 }}
  volumes:
    {{- include "sendauth-siem.sidecar.volumes" $siem | nindent 4 }}

(index .Values "sendauth-siem") holds this chart's defaults merged with the parent's overrides,
as Helm coalesces a dependency's values into the parent's. packaging/helm/examples/auth-server
is a complete parent chart.

Invariants:
- initContainers renders the agent only when sidecar.native is true, containers only when it is
  false (or in standalone mode), so the parent includes both and gets exactly one agent.
- The config is mounted as a directory, never with subPath: a subPath mount is a copy taken at
  container start and would never see a ConfigMap update.
- The agent writes only to the queue and socket volumes; the events volume is read-only for it.
*/}}

{{- define "sendauth-siem.sidecar.volumeName" -}}
{{- if eq .ctx.Values.mode "sidecar" }}
{{- index .ctx.Values.sidecar.volumeNames .key }}
{{- else }}
{{- .key }}
{{- end }}
{{- end }}

{{/* One container list item: the agent. */}}
{{- define "sendauth-siem.container" -}}
{{- $v := .Values }}
{{- $native := and (eq $v.mode "sidecar") $v.sidecar.native -}}
- name: sendauth-siem
  image: {{ include "sendauth-siem.image" . | quote }}
  imagePullPolicy: {{ $v.image.pullPolicy }}
  {{- if $native }}
  # Native sidecar: started before the auth server, stopped after it.
  restartPolicy: Always
  {{- end }}
  command: ["/usr/local/bin/sendauth-siem", "run", "--config", "/etc/sendauth-siem/config.yaml"]
  env:
    - name: {{ $v.secret.envName }}
      valueFrom:
        secretKeyRef:
          name: {{ include "sendauth-siem.secretName" . }}
          key: {{ $v.secret.tokenKey }}
    {{- with $v.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: {{ $v.status.portName }}
      containerPort: {{ $v.status.port }}
      protocol: TCP
  {{- with $v.probes.startup }}
  {{- if .enabled }}
  startupProbe:
    httpGet:
      path: /health
      port: {{ $v.status.portName }}
    periodSeconds: {{ .periodSeconds }}
    failureThreshold: {{ .failureThreshold }}
  {{- end }}
  {{- end }}
  {{- with $v.probes.liveness }}
  {{- if .enabled }}
  livenessProbe:
    httpGet:
      path: /health
      port: {{ $v.status.portName }}
    periodSeconds: {{ .periodSeconds }}
    timeoutSeconds: {{ .timeoutSeconds }}
    failureThreshold: {{ .failureThreshold }}
  {{- end }}
  {{- end }}
  {{- with $v.probes.readiness }}
  {{- if .enabled }}
  readinessProbe:
    httpGet:
      path: /health
      port: {{ $v.status.portName }}
    periodSeconds: {{ .periodSeconds }}
    timeoutSeconds: {{ .timeoutSeconds }}
    failureThreshold: {{ .failureThreshold }}
  {{- end }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.securityContext | nindent 4 }}
  volumeMounts:
    - name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "config") }}
      mountPath: /etc/sendauth-siem
      readOnly: true
    - name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "secret") }}
      mountPath: /run/secrets/sendauth-siem
      readOnly: true
    - name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "queue") }}
      mountPath: /var/lib/sendauth-siem
    - name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "socket") }}
      mountPath: /run/sendauth
    - name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "events") }}
      mountPath: /var/log/sendauth
      readOnly: true
{{- end }}

{{/* The agent's volumes (list items) for the pod. */}}
{{- define "sendauth-siem.volumes" -}}
{{- $v := .Values -}}
- name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "config") }}
  configMap:
    name: {{ include "sendauth-siem.configMapName" . }}
- name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "secret") }}
  secret:
    secretName: {{ include "sendauth-siem.secretName" . }}
    # root:fsGroup 0440: readable by the agent's group only.
    defaultMode: 0440
- name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "queue") }}
  {{- if $v.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ include "sendauth-siem.claimName" . }}
  {{- else }}
  # persistence.enabled is false: deleted with the pod, and every undelivered event with it.
  emptyDir:
    sizeLimit: {{ $v.persistence.emptyDirSizeLimit }}
  {{- end }}
{{- if eq $v.mode "sidecar" }}
- name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "socket") }}
  {{- toYaml $v.sidecar.socketVolume | nindent 2 }}
- name: {{ include "sendauth-siem.sidecar.volumeName" (dict "ctx" . "key" "events") }}
  {{- toYaml $v.sidecar.eventsVolume | nindent 2 }}
{{- else }}
- name: socket
  emptyDir:
    sizeLimit: 1Mi
- name: events
  {{- toYaml $v.standalone.eventsVolume | nindent 2 }}
{{- end }}
{{- end }}

{{- define "sendauth-siem.requireSidecarMode" -}}
{{- if ne .Values.mode "sidecar" }}
{{- fail "the sendauth-siem.sidecar.* templates need mode: sidecar in the sendauth-siem values (in standalone mode the chart runs its own Deployment)" }}
{{- end }}
{{- end }}

{{/* For the parent's initContainers: the agent when sidecar.native is true, else nothing. */}}
{{- define "sendauth-siem.sidecar.initContainers" -}}
{{- include "sendauth-siem.requireSidecarMode" . -}}
{{- if .Values.sidecar.native }}
{{- include "sendauth-siem.container" . }}
{{- end }}
{{- end }}

{{/* For the parent's containers: the agent when sidecar.native is false, else nothing. */}}
{{- define "sendauth-siem.sidecar.containers" -}}
{{- include "sendauth-siem.requireSidecarMode" . -}}
{{- if not .Values.sidecar.native }}
{{- include "sendauth-siem.container" . }}
{{- end }}
{{- end }}

{{/* For the parent's volumes. */}}
{{- define "sendauth-siem.sidecar.volumes" -}}
{{- include "sendauth-siem.requireSidecarMode" . -}}
{{- include "sendauth-siem.volumes" . }}
{{- end }}

{{/*
For the auth-server container's volumeMounts: the socket directory and the log directory it
shares with the agent (the auth server writes /var/log/sendauth/events.jsonl and connects to
/run/sendauth/siem.sock).
*/}}
{{- define "sendauth-siem.sidecar.authServerMounts" -}}
{{- include "sendauth-siem.requireSidecarMode" . -}}
- name: {{ .Values.sidecar.volumeNames.socket }}
  mountPath: /run/sendauth
- name: {{ .Values.sidecar.volumeNames.events }}
  mountPath: /var/log/sendauth
{{- end }}
