{{/*
Shared helpers. Every service template (gateway.yaml, user.yaml, ...) is one call to
"pillivery.service" with the service's name; the facts that differ between services (which
has a database, which ports) live in "pillivery.facts" so the values stay about operations.
*/}}

{{- define "pillivery.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "pillivery.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of a service's objects: <fullname>-<service>. */}}
{{- define "pillivery.serviceName" -}}
{{- printf "%s-%s" (include "pillivery.fullname" .root) .name -}}
{{- end -}}

{{- define "pillivery.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pillivery.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "pillivery.labels" -}}
{{ include "pillivery.selectorLabels" . }}
app.kubernetes.io/part-of: pillivery
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Labels every pod of the release carries (the deny-all policy selects them). */}}
{{- define "pillivery.releaseSelector" -}}
app.kubernetes.io/name: {{ include "pillivery.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Fixed facts per service: whether it owns a database, reads the JWKS, signs tokens, serves the
public HTTP port, talks to the payment gateway, and where its peers' settings live (the gateway
reads `upstreams.<peer>`, the other services `<peer>`). These follow the binaries
(docs/configuration.md), not the installation.
*/}}
{{- define "pillivery.facts" -}}
{{- $facts := dict
  "gateway" (dict "database" false "jwks" true "signs" false "http" true "upstreamKey" "UPSTREAMS__")
  "user" (dict "database" true "jwks" false "signs" true "http" false)
  "catalog" (dict "database" true "jwks" true "signs" false "http" false)
  "order" (dict "database" true "jwks" true "signs" false "http" false)
  "payment" (dict "database" true "jwks" true "signs" false "http" false "paymentGateway" true)
  "scheduler" (dict "database" true "jwks" true "signs" false "http" false)
-}}
{{- get $facts .name | toYaml -}}
{{- end -}}

{{- define "pillivery.grpcPort" -}}50051{{- end -}}
{{- define "pillivery.adminPort" -}}9090{{- end -}}
{{- define "pillivery.httpPort" -}}8080{{- end -}}

{{- define "pillivery.image" -}}
{{- $tag := default .root.Chart.AppVersion .root.Values.image.tag -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag must name a release, not latest" -}}
{{- end -}}
{{- printf "%s/pillivery-%s:%s" .root.Values.image.registry .name $tag -}}
{{- end -}}

{{/* Whether a service talks to the Kubernetes API (EndpointSlice discovery of its upstreams). */}}
{{- define "pillivery.discovers" -}}
{{- $svc := get .root.Values.services .name -}}
{{- if and (eq .root.Values.discovery "kubernetes") (gt (len $svc.upstreams) 0) -}}true{{- end -}}
{{- end -}}

{{/* The target of a peer, in the form the platform's client reads (docs/configuration.md). */}}
{{- define "pillivery.upstreamTarget" -}}
{{- $peer := include "pillivery.serviceName" (dict "root" .root "name" .peer) -}}
{{- if eq .root.Values.discovery "kubernetes" -}}
{{- printf "kubernetes:///%s:grpc" $peer -}}
{{- else -}}
{{- printf "dns://%s-headless:%s" $peer (include "pillivery.grpcPort" .) -}}
{{- end -}}
{{- end -}}

{{/*
The non-secret settings of a service as `PILLIVERY_…: value` (the ConfigMap's data, and the
migration Job's environment, which cannot wait for the ConfigMap: hooks run before it exists).
*/}}
{{- define "pillivery.settings" -}}
{{- $root := .root -}}
{{- $svc := get $root.Values.services .name -}}
{{- $facts := include "pillivery.facts" . | fromYaml -}}
PILLIVERY_SERVER__GRPC_ADDR: {{ printf "0.0.0.0:%s" (include "pillivery.grpcPort" .) | quote }}
PILLIVERY_SERVER__ADMIN_ADDR: {{ printf "0.0.0.0:%s" (include "pillivery.adminPort" .) | quote }}
PILLIVERY_SERVER__LAMEDUCK_MS: {{ $root.Values.server.lameduckMs | quote }}
PILLIVERY_SERVER__GRACE_MS: {{ $root.Values.server.graceMs | quote }}
PILLIVERY_TELEMETRY__LOG_FORMAT: {{ $root.Values.telemetry.logFormat | quote }}
PILLIVERY_TELEMETRY__LOG_LEVEL: {{ $root.Values.telemetry.logLevel | quote }}
{{- with $root.Values.telemetry.otlpEndpoint }}
PILLIVERY_TELEMETRY__OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
{{- if $facts.database }}
PILLIVERY_DATABASE__MAX_CONNECTIONS: {{ $root.Values.database.maxConnections | quote }}
PILLIVERY_DATABASE__ACQUIRE_TIMEOUT_MS: {{ $root.Values.database.acquireTimeoutMs | quote }}
{{- if $root.Values.database.schemaPerService }}
PILLIVERY_DATABASE__SCHEMA: {{ .name | quote }}
{{- end }}
{{- end }}
{{- if $facts.http }}
PILLIVERY_HTTP_PORT: {{ include "pillivery.httpPort" . | quote }}
PILLIVERY_TRUST_FORWARDED_FOR: {{ $root.Values.edge.enabled | quote }}
{{- end }}
{{- range $peer, $upstream := $svc.upstreams }}
PILLIVERY_{{ $facts.upstreamKey | default "" }}{{ $peer | upper }}__TARGET: {{ include "pillivery.upstreamTarget" (dict "root" $root "peer" $peer) | quote }}
{{- with $upstream.services }}
PILLIVERY_{{ $facts.upstreamKey | default "" }}{{ $peer | upper }}__SERVICES: {{ . | quote }}
{{- end }}
{{- end }}
{{- range $key, $value := $svc.env }}
PILLIVERY_{{ $key }}: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* The settings taken from existing Secrets, as container `env` entries. */}}
{{- define "pillivery.secretEnv" -}}
{{- $root := .root -}}
{{- $svc := get $root.Values.services .name -}}
{{- $facts := include "pillivery.facts" . | fromYaml -}}
{{- if $facts.database }}
- name: PILLIVERY_DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.database.name }}
      key: {{ get $root.Values.secrets.database.keys .name }}
{{- end }}
{{- if $svc.redis }}
- name: PILLIVERY_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.redis.name }}
      key: {{ $root.Values.secrets.redis.key }}
{{- end }}
{{- if $facts.signs }}
- name: PILLIVERY_JWT_PRIVATE_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.jwtSigningKey.name }}
      key: {{ $root.Values.secrets.jwtSigningKey.key }}
{{- end }}
{{- if $facts.paymentGateway }}
- name: PILLIVERY_PROVIDER__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.paymentGateway.name }}
      key: {{ $root.Values.secrets.paymentGateway.key }}
{{- end }}
{{- if $facts.jwks }}
- name: PILLIVERY_JWKS
  valueFrom:
    secretKeyRef:
      name: {{ $root.Values.secrets.jwks.name }}
      key: {{ $root.Values.secrets.jwks.key }}
{{- end }}
{{- range $key, $ref := $svc.secretEnv }}
- name: PILLIVERY_{{ $key }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secret }}
      key: {{ $ref.key }}
{{- end }}
{{- end -}}

{{- define "pillivery.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "pillivery.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Seconds a pod may take to stop: lameduck + drain, plus a margin for the process to exit. */}}
{{- define "pillivery.terminationGrace" -}}
{{- add (div (add .Values.server.lameduckMs .Values.server.graceMs) 1000) 10 -}}
{{- end -}}

{{/* Egress to the cluster DNS, which every pod needs. */}}
{{- define "pillivery.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ .Values.networkPolicy.dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podLabels | nindent 10 }}
  ports:
    - {protocol: UDP, port: 53}
    - {protocol: TCP, port: 53}
{{- end -}}

{{/* Egress rules to external address blocks: a list of {cidr, except, ports}. */}}
{{- define "pillivery.blockEgress" -}}
{{- range . }}
- to:
    - ipBlock:
        cidr: {{ .cidr }}
        {{- with .except }}
        except:
          {{- toYaml . | nindent 10 }}
        {{- end }}
  ports:
    {{- range .ports }}
    - {protocol: TCP, port: {{ . }}}
    {{- end }}
{{- end }}
{{- end -}}
