{{/*
Everything one service needs, from its name: ServiceAccount, ConfigMap, Deployment, Service
(plus a headless one), HorizontalPodAutoscaler, PodDisruptionBudget, NetworkPolicy, the RBAC
to watch EndpointSlices when it discovers peers, and the migration Job when it has a database.
Called as: include "pillivery.service" (dict "root" . "name" "catalog")
*/}}
{{- define "pillivery.service" -}}
{{- $root := .root -}}
{{- $name := .name -}}
{{- $svc := get $root.Values.services $name -}}
{{- if $svc.enabled -}}
{{- $ctx := dict "root" $root "name" $name -}}
{{- $facts := include "pillivery.facts" $ctx | fromYaml -}}
{{- $fullname := include "pillivery.serviceName" $ctx -}}
{{- $discovers := include "pillivery.discovers" $ctx -}}
{{- $grpcPort := include "pillivery.grpcPort" $ctx | int -}}
{{- $adminPort := include "pillivery.adminPort" $ctx | int -}}
{{- $httpPort := include "pillivery.httpPort" $ctx | int -}}
{{- $settings := include "pillivery.settings" $ctx -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
automountServiceAccountToken: {{ if $discovers }}true{{ else }}false{{ end }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
data:
  {{- $settings | nindent 2 }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
spec:
  {{- if not $svc.autoscaling.enabled }}
  replicas: {{ $svc.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "pillivery.selectorLabels" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      # Never below the wanted count: a new pod must be ready before an old one goes.
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "pillivery.labels" $ctx | nindent 8 }}
      annotations:
        # A changed setting rolls the pods (the environment is read at start only).
        checksum/config: {{ $settings | sha256sum }}
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $adminPort | quote }}
        prometheus.io/path: /metrics
    spec:
      serviceAccountName: {{ $fullname }}
      automountServiceAccountToken: {{ if $discovers }}true{{ else }}false{{ end }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      # Longer than lameduck + drain, so SIGKILL never cuts a call the service meant to finish.
      terminationGracePeriodSeconds: {{ include "pillivery.terminationGrace" $root }}
      securityContext:
        {{- include "pillivery.podSecurityContext" $ctx | nindent 8 }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "pillivery.selectorLabels" $ctx | nindent 14 }}
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "pillivery.selectorLabels" $ctx | nindent 14 }}
      containers:
        - name: {{ $name }}
          image: {{ include "pillivery.image" $ctx }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          ports:
            - name: grpc
              containerPort: {{ $grpcPort }}
              protocol: TCP
            - name: admin
              containerPort: {{ $adminPort }}
              protocol: TCP
            {{- if $facts.http }}
            - name: http
              containerPort: {{ $httpPort }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $fullname }}
          {{- $secretEnv := include "pillivery.secretEnv" $ctx | trim }}
          {{- if $secretEnv }}
          env:
            {{- $secretEnv | nindent 12 }}
          {{- end }}
          # gRPC health (grpc.health.v1) on the service's own port: `liveness` is SERVING while
          # the process runs, `readiness` only while it accepts work (after migrations, and
          # not any more once shutdown starts).
          startupProbe:
            grpc:
              port: {{ $grpcPort }}
              service: liveness
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            grpc:
              port: {{ $grpcPort }}
              service: liveness
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
          readinessProbe:
            grpc:
              port: {{ $grpcPort }}
              service: readiness
            periodSeconds: 5
            timeoutSeconds: 2
            failureThreshold: 2
          resources:
            {{- toYaml $svc.resources | nindent 12 }}
          securityContext:
            {{- include "pillivery.containerSecurityContext" $ctx | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "pillivery.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $grpcPort }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
    - name: admin
      port: {{ $adminPort }}
      targetPort: admin
      protocol: TCP
      appProtocol: http
    {{- if $facts.http }}
    - name: http
      port: {{ $httpPort }}
      targetPort: http
      protocol: TCP
      appProtocol: http
    {{- end }}
---
# One address per ready pod: for client-side balancing by DNS and for the edge proxy.
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}-headless
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "pillivery.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $grpcPort }}
      targetPort: grpc
      protocol: TCP
      appProtocol: kubernetes.io/h2c
    {{- if $facts.http }}
    - name: http
      port: {{ $httpPort }}
      targetPort: http
      protocol: TCP
      appProtocol: http
    {{- end }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}
  {{- if $svc.autoscaling.enabled }}
  minReplicas: {{ $svc.autoscaling.minReplicas }}
  maxReplicas: {{ $svc.autoscaling.maxReplicas }}
  {{- else }}
  # Autoscaling off: the HPA holds the fixed replica count.
  minReplicas: {{ $svc.replicas }}
  maxReplicas: {{ $svc.replicas }}
  {{- end }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $svc.autoscaling.targetCPUUtilizationPercentage }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 300
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ $svc.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "pillivery.selectorLabels" $ctx | nindent 6 }}
{{- if $discovers }}
---
# Discovery of peers from EndpointSlices (crates/platform/src/client/kubernetes.rs).
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ $fullname }}-discovery
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
rules:
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: {{ $fullname }}-discovery
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: {{ $fullname }}-discovery
subjects:
  - kind: ServiceAccount
    name: {{ $fullname }}
    namespace: {{ $root.Release.Namespace }}
{{- end }}
{{- if $root.Values.networkPolicy.enabled }}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "pillivery.labels" $ctx | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "pillivery.selectorLabels" $ctx | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- range $caller, $callerValues := $root.Values.services }}
    {{- if and $callerValues.enabled (has $name $callerValues.calls) }}
    - from:
        - podSelector:
            matchLabels:
              {{- include "pillivery.selectorLabels" (dict "root" $root "name" $caller) | nindent 14 }}
      ports:
        - {protocol: TCP, port: {{ $grpcPort }}}
    {{- end }}
    {{- end }}
    {{- if $facts.http }}
    {{- if $root.Values.edge.enabled }}
    # The edge proxy: requests to the public port, active health checks on the admin port.
    - from:
        - podSelector:
            matchLabels:
              {{- include "pillivery.selectorLabels" (dict "root" $root "name" "edge") | nindent 14 }}
      ports:
        - {protocol: TCP, port: {{ $httpPort }}}
        - {protocol: TCP, port: {{ $adminPort }}}
    {{- else }}
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $root.Values.networkPolicy.gatewayIngressNamespace }}
      ports:
        - {protocol: TCP, port: {{ $httpPort }}}
    {{- end }}
    {{- end }}
    - from:
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $root.Values.networkPolicy.metricsNamespace }}
      ports:
        - {protocol: TCP, port: {{ $adminPort }}}
  egress:
    {{- include "pillivery.dnsEgress" $root | nindent 4 }}
    {{- range $callee := $svc.calls }}
    {{- if (get $root.Values.services $callee).enabled }}
    - to:
        - podSelector:
            matchLabels:
              {{- include "pillivery.selectorLabels" (dict "root" $root "name" $callee) | nindent 14 }}
      ports:
        - {protocol: TCP, port: {{ $grpcPort }}}
    {{- end }}
    {{- end }}
    {{- if $facts.database }}
    {{- include "pillivery.blockEgress" $root.Values.networkPolicy.databases | nindent 4 }}
    {{- end }}
    {{- include "pillivery.blockEgress" $root.Values.networkPolicy.redis | nindent 4 }}
    {{- if $facts.paymentGateway }}
    {{- include "pillivery.blockEgress" $root.Values.networkPolicy.paymentGateway | nindent 4 }}
    {{- end }}
    {{- if $discovers }}
    {{- include "pillivery.blockEgress" $root.Values.networkPolicy.apiServer | nindent 4 }}
    {{- end }}
{{- end }}
{{- if and $facts.database $root.Values.migrations.enabled }}
---
# Forward-only migrations before the new version's pods start. A hook, so it runs before the
# ConfigMap exists on a first install: its settings are inline.
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ $fullname }}-migrate
  labels:
    {{- include "pillivery.labels" (dict "root" $root "name" (printf "%s-migration" $name)) | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "0"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $root.Values.migrations.backoffLimit }}
  activeDeadlineSeconds: {{ $root.Values.migrations.activeDeadlineSeconds }}
  ttlSecondsAfterFinished: 3600
  template:
    metadata:
      labels:
        {{- include "pillivery.labels" (dict "root" $root "name" (printf "%s-migration" $name)) | nindent 8 }}
        pillivery.io/role: migration
    spec:
      restartPolicy: Never
      automountServiceAccountToken: false
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "pillivery.podSecurityContext" $ctx | nindent 8 }}
      containers:
        - name: migrate
          image: {{ include "pillivery.image" $ctx }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: [--migrate]
          ports:
            - name: grpc
              containerPort: {{ $grpcPort }}
              protocol: TCP
            - name: admin
              containerPort: {{ $adminPort }}
              protocol: TCP
          env:
            {{- range $key, $value := ($settings | fromYaml) }}
            - name: {{ $key }}
              value: {{ $value | quote }}
            {{- end }}
            {{- include "pillivery.secretEnv" $ctx | trim | nindent 12 }}
          resources:
            {{- toYaml $root.Values.migrations.resources | nindent 12 }}
          securityContext:
            {{- include "pillivery.containerSecurityContext" $ctx | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
{{- end }}
{{- end }}
{{- end -}}
