{{/* Chart name, truncated to the 63 characters Kubernetes names allow. */}}
{{- define "signalwire-video-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release name, plus the chart name unless it already contains it. */}}
{{- define "signalwire-video-exporter.fullname" -}}
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

{{- define "signalwire-video-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "signalwire-video-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "signalwire-video-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "signalwire-video-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "signalwire-video-exporter.labels" -}}
helm.sh/chart: {{ include "signalwire-video-exporter.chart" . }}
{{ include "signalwire-video-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "signalwire-video-exporter.name" . }}
{{- end }}

{{/* Labels of the `helm test` pod (not selected by the Service). */}}
{{- define "signalwire-video-exporter.testLabels" -}}
app.kubernetes.io/name: {{ include "signalwire-video-exporter.name" . }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
{{- end }}

{{- define "signalwire-video-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "signalwire-video-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "signalwire-video-exporter.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the API tokens. */}}
{{- define "signalwire-video-exporter.secretName" -}}
{{- default (include "signalwire-video-exporter.fullname" .) .Values.existingSecret }}
{{- end }}

{{- define "signalwire-video-exporter.tokenKey" -}}
{{- default (printf "%s-api-token" .name) .apiTokenKey }}
{{- end }}

{{- define "signalwire-video-exporter.tokenDir" -}}
/etc/signalwire
{{- end }}

{{- define "signalwire-video-exporter.configDir" -}}
/etc/signalwire-video-exporter
{{- end }}

{{- define "signalwire-video-exporter.statePath" -}}
{{- printf "%s/state.json" (trimSuffix "/" .Values.persistence.mountPath) }}
{{- end }}

{{/*
Checks the credentials and fails with a clear message; renders nothing.
Included by every template that depends on them.
*/}}
{{- define "signalwire-video-exporter.validate" -}}
{{- $help := "set spaces[0].name, spaces[0].space, spaces[0].projectId and either spaces[0].apiToken or existingSecret (a Secret with the key spaces[0].apiTokenKey, default \"<name>-api-token\")" }}
{{- if not .Values.spaces }}
{{- fail (printf "\n\nsignalwire-video-exporter: no SignalWire credentials given: %s. See the chart's values.yaml." $help) }}
{{- end }}
{{- $names := dict }}
{{- $keys := dict }}
{{- range $i, $s := .Values.spaces }}
{{- if not $s.name }}
{{- fail (printf "\n\nsignalwire-video-exporter: spaces[%d].name is required" $i) }}
{{- end }}
{{- if hasKey $names $s.name }}
{{- fail (printf "\n\nsignalwire-video-exporter: spaces[%d].name %q is used twice" $i $s.name) }}
{{- end }}
{{- $_ := set $names $s.name true }}
{{- if and (not $s.space) (not $s.baseUrl) }}
{{- fail (printf "\n\nsignalwire-video-exporter: spaces[%d].space (or spaces[%d].baseUrl) is required" $i $i) }}
{{- end }}
{{- if not $s.projectId }}
{{- fail (printf "\n\nsignalwire-video-exporter: no SignalWire credentials for space %q: spaces[%d].projectId is required" $s.name $i) }}
{{- end }}
{{- $key := include "signalwire-video-exporter.tokenKey" $s }}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $key) }}
{{- fail (printf "\n\nsignalwire-video-exporter: spaces[%d]: Secret key %q is invalid: set spaces[%d].apiTokenKey (letters, digits, '-', '_', '.')" $i $key $i) }}
{{- end }}
{{- if hasKey $keys $key }}
{{- fail (printf "\n\nsignalwire-video-exporter: spaces[%d]: Secret key %q is used by two spaces" $i $key) }}
{{- end }}
{{- $_ := set $keys $key true }}
{{- if $.Values.existingSecret }}
{{- if $s.apiToken }}
{{- fail (printf "\n\nsignalwire-video-exporter: spaces[%d].apiToken and existingSecret are both set: put the token in the Secret %q under the key %q and leave apiToken empty" $i $.Values.existingSecret $key) }}
{{- end }}
{{- else if not $s.apiToken }}
{{- fail (printf "\n\nsignalwire-video-exporter: no SignalWire credentials for space %q: set spaces[%d].apiToken, or existingSecret (a Secret with the key %q)" $s.name $i $key) }}
{{- end }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "\n\nsignalwire-video-exporter: persistence.enabled needs replicaCount 1: a state file belongs to one process (and the volume is ReadWriteOnce)" }}
{{- end }}
{{- include "signalwire-video-exporter.validateWebConfig" . }}
{{- end }}

{{/* Checks the webConfig values; renders nothing. */}}
{{- define "signalwire-video-exporter.validateWebConfig" -}}
{{- $w := .Values.webConfig | default dict }}
{{- if $w.enabled }}
{{- if and $w.config $w.existingSecret }}
{{- fail "\n\nsignalwire-video-exporter: webConfig.config and webConfig.existingSecret are both set: give the web config inline or in your Secret, not both" }}
{{- end }}
{{- if not (or $w.config $w.existingSecret) }}
{{- fail "\n\nsignalwire-video-exporter: webConfig.enabled needs webConfig.config (the web config inline) or webConfig.existingSecret (a Secret holding it)" }}
{{- end }}
{{- $tlsSecret := (($w.tls | default dict).existingSecret) }}
{{- $tls := (($w.config | default dict).tls_server_config) | default dict }}
{{- $dir := include "signalwire-video-exporter.tlsDir" . }}
{{- range $name := list "cert_file" "key_file" "client_ca_file" }}
{{- $file := toString (get $tls $name) }}
{{- if and (not $tlsSecret) (or (hasPrefix "tls/" $file) (hasPrefix (printf "%s/" $dir) $file)) }}
{{- fail (printf "\n\nsignalwire-video-exporter: webConfig.config.tls_server_config.%s is %q but webConfig.tls.existingSecret is empty: name the kubernetes.io/tls Secret mounted at %s" $name $file $dir) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "signalwire-video-exporter.webConfigPath" -}}
{{- printf "%s/web-config.yml" (include "signalwire-video-exporter.configDir" .) }}
{{- end }}

{{/* Where webConfig.tls.existingSecret is mounted: tls/ beside the web config. */}}
{{- define "signalwire-video-exporter.tlsDir" -}}
{{- printf "%s/tls" (include "signalwire-video-exporter.configDir" .) }}
{{- end }}

{{- define "signalwire-video-exporter.webConfigSecretName" -}}
{{- default (printf "%s-web-config" (include "signalwire-video-exporter.fullname" .)) .Values.webConfig.existingSecret }}
{{- end }}

{{/*
How the exporter serves: "none" (plain HTTP), "tls" (HTTPS) or "mutual" (HTTPS requiring a verified
client certificate). webConfig.tlsMode when set; else, for an inline web config, "tls" when it has a
certificate, "mutual" when client_auth_type is also RequireAndVerifyClientCert; else (a web config in
a Secret the chart cannot read) "tls" when webConfig.tls.existingSecret is set.
*/}}
{{- define "signalwire-video-exporter.tlsMode" -}}
{{- $w := .Values.webConfig | default dict }}
{{- if not $w.enabled }}
{{- print "none" }}
{{- else if $w.tlsMode }}
{{- print $w.tlsMode }}
{{- else if $w.config }}
{{- $tls := $w.config.tls_server_config | default dict }}
{{- if not (or $tls.cert_file $tls.cert $tls.key_file $tls.key) }}
{{- print "none" }}
{{- else if eq (toString $tls.client_auth_type) "RequireAndVerifyClientCert" }}
{{- print "mutual" }}
{{- else }}
{{- print "tls" }}
{{- end }}
{{- else if ($w.tls | default dict).existingSecret }}
{{- print "tls" }}
{{- else }}
{{- print "none" }}
{{- end }}
{{- end }}

{{- define "signalwire-video-exporter.scheme" -}}
{{- ternary "http" "https" (eq (include "signalwire-video-exporter.tlsMode" .) "none") }}
{{- end }}

{{/*
A probe of the exporter container, adapted to the web config: with TLS an httpGet probe without an
explicit scheme gets scheme HTTPS; with mutual TLS (the kubelet has no client certificate) an httpGet
probe becomes a tcpSocket probe on the same port. exec, tcpSocket and grpc probes are kept as they are.
Call with (dict "probe" .Values.livenessProbe "context" $).
*/}}
{{- define "signalwire-video-exporter.probe" -}}
{{- $probe := deepCopy .probe }}
{{- $mode := include "signalwire-video-exporter.tlsMode" .context }}
{{- with $probe.httpGet }}
{{- if eq $mode "mutual" }}
{{- $_ := set $probe "tcpSocket" (dict "port" .port) }}
{{- $_ := unset $probe "httpGet" }}
{{- else if and (eq $mode "tls") (not .scheme) }}
{{- $_ := set . "scheme" "HTTPS" }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/* The exporter's configuration file. The token is only referenced by path. */}}
{{- define "signalwire-video-exporter.config" -}}
{{- $spaces := list }}
{{- range .Values.spaces }}
{{- $s := dict "name" .name "project_id" (toString .projectId) "api_token_file" (printf "%s/%s" (include "signalwire-video-exporter.tokenDir" $) (include "signalwire-video-exporter.tokenKey" .)) }}
{{- if .baseUrl }}
{{- $_ := set $s "base_url" .baseUrl }}
{{- else }}
{{- $_ := set $s "space" .space }}
{{- end }}
{{- with .filters }}
{{- $_ := set $s "filters" . }}
{{- end }}
{{- with .budget }}
{{- $_ := set $s "budget" . }}
{{- end }}
{{- $spaces = append $spaces $s }}
{{- end }}
{{- $cfg := deepCopy (default dict .Values.config) }}
{{- $state := deepCopy (default dict (index $cfg "state")) }}
{{- if .Values.persistence.enabled }}
{{- $_ := set $state "path" (include "signalwire-video-exporter.statePath" .) }}
{{- else }}
{{- $_ := unset $state "path" }}
{{- end }}
{{- $_ := set $cfg "state" $state }}
{{- $server := deepCopy (default dict (index $cfg "server")) }}
{{- $_ := set $server "listen_address" "0.0.0.0:10092" }}
{{- $_ := set $cfg "server" $server }}
{{- $_ := set $cfg "spaces" $spaces }}
{{- toYaml $cfg }}
{{- end }}
