{{/*
The Envoy edge's bootstrap (envoy.config.bootstrap.v3.Bootstrap), checked strictly against
Envoy's own API by k8s/checks. Short Service names resolve through the pod's DNS search path,
so the same file works in any namespace (and in the kustomize base rendered from this chart).
*/}}

{{/* Retries for requests that are safe to send again (GET/HEAD/OPTIONS, Idempotency-Key). */}}
{{- define "pillivery.envoyRetries" -}}
retry_on: connect-failure,refused-stream,reset
num_retries: {{ .retries.numRetries }}
per_try_timeout: {{ printf "%.3fs" (divf .retries.perTryTimeoutMs 1000) }}
retry_back_off:
  base_interval: 0.025s
  max_interval: 0.250s
retry_host_predicate:
  - name: envoy.retry_host_predicates.previous_hosts
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
host_selection_retry_max_attempts: 3
{{- end -}}

{{- define "pillivery.envoyHttpConnectionManager" -}}
{{- $root := .root -}}
{{- $edge := $root.Values.edge -}}
name: envoy.filters.network.http_connection_manager
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
  stat_prefix: {{ .statPrefix }}
  # HTTP/1.1 and HTTP/2 (prior knowledge or ALPN) on the same port.
  codec_type: AUTO
  http2_protocol_options:
    max_concurrent_streams: 128
    initial_stream_window_size: 65536
    initial_connection_window_size: 1048576
  common_http_protocol_options:
    idle_timeout: 300s
    headers_with_underscores_action: REJECT_REQUEST
  stream_idle_timeout: 300s
  request_headers_timeout: 10s
  use_remote_address: true
  # The client's x-request-id is kept (and one made when absent), so the gateway's logs and
  # traces join the edge's access log.
  generate_request_id: true
  preserve_external_request_id: true
  always_set_request_id_in_response: true
  access_log:
    - name: envoy.access_loggers.stdout
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
        log_format:
          json_format:
            time: "%START_TIME%"
            request_id: "%REQ(X-REQUEST-ID)%"
            method: "%REQ(:METHOD)%"
            path: "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
            protocol: "%PROTOCOL%"
            status: "%RESPONSE_CODE%"
            flags: "%RESPONSE_FLAGS%"
            bytes_received: "%BYTES_RECEIVED%"
            bytes_sent: "%BYTES_SENT%"
            duration_ms: "%DURATION%"
            upstream_ms: "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"
            upstream: "%UPSTREAM_HOST%"
            client: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
            user_agent: "%REQ(USER-AGENT)%"
            traceparent: "%REQ(TRACEPARENT)%"
  route_config:
    name: edge
    virtual_hosts:
      - name: shop
        domains: ["*"]
        routes:
          # The bulk item import may run for 120 s at the gateway; never retried.
          - match:
              prefix: /api/admin/items:import
            route:
              cluster: gateway
              timeout: {{ printf "%.3fs" (divf $edge.timeouts.importMs 1000) }}
          # Safe methods, and requests that carry an idempotency key, may be sent again.
          - match:
              prefix: /
              headers:
                - name: ":method"
                  string_match:
                    safe_regex:
                      regex: "GET|HEAD|OPTIONS"
            route:
              cluster: gateway
              timeout: {{ printf "%.3fs" (divf $edge.timeouts.defaultMs 1000) }}
              retry_policy:
                {{- include "pillivery.envoyRetries" $edge | nindent 16 }}
          - match:
              prefix: /
              headers:
                - name: idempotency-key
                  present_match: true
            route:
              cluster: gateway
              timeout: {{ printf "%.3fs" (divf $edge.timeouts.defaultMs 1000) }}
              retry_policy:
                {{- include "pillivery.envoyRetries" $edge | nindent 16 }}
          - match:
              prefix: /
            route:
              cluster: gateway
              timeout: {{ printf "%.3fs" (divf $edge.timeouts.defaultMs 1000) }}
  http_filters:
    # Kubelet's readiness probe; answered here, 503 once Envoy drains.
    - name: envoy.filters.http.health_check
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.health_check.v3.HealthCheck
        pass_through_mode: false
        headers:
          - name: ":path"
            string_match:
              exact: /edge/ready
    - name: envoy.filters.http.local_ratelimit
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
        stat_prefix: edge_rate_limit
        token_bucket:
          max_tokens: {{ $edge.rateLimit.maxTokens }}
          tokens_per_fill: {{ $edge.rateLimit.tokensPerFill }}
          fill_interval: {{ printf "%.3fs" (divf $edge.rateLimit.fillIntervalMs 1000) }}
        filter_enabled:
          runtime_key: edge_rate_limit_enabled
          default_value:
            numerator: 100
            denominator: HUNDRED
        filter_enforced:
          runtime_key: edge_rate_limit_enforced
          default_value:
            numerator: 100
            denominator: HUNDRED
        response_headers_to_add:
          - append_action: OVERWRITE_IF_EXISTS_OR_ADD
            header:
              key: x-rate-limited
              value: "true"
    - name: envoy.filters.http.router
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
{{- end -}}

{{- define "pillivery.envoyConfig" -}}
{{- $root := . -}}
{{- $edge := .Values.edge -}}
{{- $gateway := include "pillivery.serviceName" (dict "root" $root "name" "gateway") -}}
admin:
  # Loopback only: reach it with kubectl port-forward.
  address:
    socket_address:
      address: 127.0.0.1
      port_value: 9901
overload_manager:
  resource_monitors:
    - name: envoy.resource_monitors.global_downstream_max_connections
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
        max_active_downstream_connections: 50000
static_resources:
  listeners:
    - name: http
      address:
        socket_address:
          address: 0.0.0.0
          port_value: 8080
      filter_chains:
        - filters:
            - {{- include "pillivery.envoyHttpConnectionManager" (dict "root" $root "statPrefix" "edge_http") | nindent 14 }}
    {{- if $edge.tls.enabled }}
    - name: https
      address:
        socket_address:
          address: 0.0.0.0
          port_value: 8443
      filter_chains:
        - transport_socket:
            name: envoy.transport_sockets.tls
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
              common_tls_context:
                alpn_protocols: [h2, http/1.1]
                tls_params:
                  tls_minimum_protocol_version: TLSv1_2
                tls_certificates:
                  - certificate_chain:
                      filename: /etc/envoy/tls/tls.crt
                    private_key:
                      filename: /etc/envoy/tls/tls.key
          filters:
            - {{- include "pillivery.envoyHttpConnectionManager" (dict "root" $root "statPrefix" "edge_https") | nindent 14 }}
    {{- end }}
  clusters:
    - name: gateway
      # Every gateway pod (headless Service), balanced by Envoy itself.
      type: STRICT_DNS
      dns_lookup_family: V4_PREFERRED
      dns_refresh_rate: 5s
      connect_timeout: 1s
      lb_policy: LEAST_REQUEST
      load_assignment:
        cluster_name: gateway
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address:
                      address: {{ $gateway }}-headless
                      port_value: {{ include "pillivery.httpPort" . }}
                  # Health is asked on the admin port (/readyz); the public port has none.
                  health_check_config:
                    port_value: {{ include "pillivery.adminPort" . }}
      health_checks:
        - timeout: 1s
          interval: 5s
          unhealthy_threshold: 2
          healthy_threshold: 1
          http_health_check:
            path: /readyz
      outlier_detection:
        consecutive_5xx: 5
        consecutive_gateway_failure: 3
        interval: 5s
        base_ejection_time: 30s
        max_ejection_percent: 50
      circuit_breakers:
        thresholds:
          - priority: DEFAULT
            max_connections: {{ $edge.circuitBreaker.maxConnections }}
            max_pending_requests: {{ $edge.circuitBreaker.maxPendingRequests }}
            max_requests: {{ $edge.circuitBreaker.maxRequests }}
            max_retries: {{ $edge.circuitBreaker.maxRetries }}
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          common_http_protocol_options:
            idle_timeout: 60s
          explicit_http_config:
            http_protocol_options: {}
{{- end -}}
