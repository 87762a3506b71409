#!/usr/bin/env bash
# The payment load tests of issue 6 against the embedded fleet: builds both binaries in release
# (unless given), starts `pillivery` in a throwaway data folder on a free port, reads the
# gateway's address and the payment service's admin (metrics) address from its banner, runs
# `payment-approve` (N approvals at once, the sandbox answering approve after PG_LATENCY_MS) and
# then the `breaker` experiment (the sandbox's 5xx rate ramped to 75 % while payments are looked
# up and the catalog browsed), and stops the fleet. Both reach the payment sandbox on the origin
# the readies name, so nothing else is needed. See load/README.md.
#
# Knobs (environment): APPROVALS (1000), PG_LATENCY_MS (2000), LOOKUP_RATE (50), BROWSE_RATE
# (200), BASELINE_SECONDS (10), RAMP_SECONDS (30), HOLD_SECONDS (20), RECOVERY_SECONDS (30),
# TESTS ("payment-approve breaker"), OUT (results folder; a new temporary one by default),
# FLEET and LOAD (prebuilt binaries; skip building).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pillivery-target}"
APPROVALS="${APPROVALS:-1000}"
PG_LATENCY_MS="${PG_LATENCY_MS:-2000}"
LOOKUP_RATE="${LOOKUP_RATE:-50}"
BROWSE_RATE="${BROWSE_RATE:-200}"
BASELINE_SECONDS="${BASELINE_SECONDS:-10}"
RAMP_SECONDS="${RAMP_SECONDS:-30}"
HOLD_SECONDS="${HOLD_SECONDS:-20}"
RECOVERY_SECONDS="${RECOVERY_SECONDS:-30}"
TESTS="${TESTS:-payment-approve breaker}"
OUT="${OUT:-$(mktemp -d -t pillivery-payments.XXXXXX)}"
mkdir -p "$OUT"

log() { printf '\n== %s\n' "$*"; }

if [[ -z "${FLEET:-}" ]]; then
    log "build the fleet (release)"
    cargo build --release -p pillivery
    FLEET="$CARGO_TARGET_DIR/release/pillivery"
fi
if [[ -z "${LOAD:-}" ]]; then
    # A separate invocation, so goose's features never reach the fleet's build.
    log "build the load tool (release)"
    cargo build --release -p pillivery-load
    LOAD="$CARGO_TARGET_DIR/release/pillivery-load"
fi

DATA="$(mktemp -d -t pillivery-data.XXXXXX)"
FLEET_PID=""
cleanup() {
    if [[ -n "$FLEET_PID" ]] && kill -0 "$FLEET_PID" 2>/dev/null; then
        kill -TERM "$FLEET_PID" 2>/dev/null || true
        wait "$FLEET_PID" 2>/dev/null || true
    fi
    rm -rf "$DATA"
}
trap cleanup EXIT

log "start the embedded fleet in $DATA (log: $OUT/fleet.log)"
# Warnings only: the breaker's transitions are warnings, and per-request logging would cost
# CPU the measurement needs.
"$FLEET" --http-port 0 --data-dir "$DATA" --log-format json --log-level warn \
    > "$OUT/fleet.log" 2>&1 &
FLEET_PID=$!
HOST=""
METRICS=""
for _ in $(seq 1 600); do
    if ! kill -0 "$FLEET_PID" 2>/dev/null; then
        echo "the fleet stopped while starting; its log:" >&2
        cat "$OUT/fleet.log" >&2
        exit 1
    fi
    HOST=$(grep -o 'Pillivery is running at http://[0-9.:]*' "$OUT/fleet.log" | awk '{print $NF}' || true)
    # The banner's line `  payment    gRPC <addr>  admin http://<addr>/metrics`.
    METRICS=$(grep -E '^ +payment +gRPC' "$OUT/fleet.log" | grep -o 'http://[0-9.:]*/metrics' || true)
    [[ -n "$HOST" && -n "$METRICS" ]] && break
    sleep 0.2
done
[[ -n "$HOST" && -n "$METRICS" ]] || { echo "no banner from the fleet" >&2; exit 1; }
echo "gateway $HOST, payment metrics $METRICS"

{
    echo "# pillivery payment load run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- nproc: $(nproc); load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
} > "$OUT/summary.md"

status=0
for test in $TESTS; do
    case "$test" in
    payment-approve)
        log "payment-approve: $APPROVALS approvals at once, PG $PG_LATENCY_MS ms"
        "$LOAD" payment-approve --host "$HOST" --approvals "$APPROVALS" --payment-metrics "$METRICS" \
            --pg-latency-ms "$PG_LATENCY_MS" 2>&1 | tee "$OUT/payment-approve.txt" || status=1
        ;;
    breaker)
        log "breaker: ramp to 75 % 5xx with lookups at $LOOKUP_RATE/s and browsing at $BROWSE_RATE/s"
        "$LOAD" breaker --host "$HOST" --payment-metrics "$METRICS" \
            --lookup-rate "$LOOKUP_RATE" --browse-rate "$BROWSE_RATE" \
            --baseline-seconds "$BASELINE_SECONDS" --ramp-seconds "$RAMP_SECONDS" \
            --hold-seconds "$HOLD_SECONDS" --recovery-seconds "$RECOVERY_SECONDS" \
            2>&1 | tee "$OUT/breaker.txt" || status=1
        ;;
    *)
        echo "unknown test $test" >&2
        status=1
        ;;
    esac
    [[ "${PIPESTATUS[0]}" == 0 ]] || status=1
done
cat "$OUT"/payment-approve.txt "$OUT"/breaker.txt >> "$OUT/summary.md" 2>/dev/null || true
grep -h 'circuit breaker changed state' "$OUT/fleet.log" > "$OUT/breaker-transitions.log" || true
echo
echo "results in $OUT"
exit "$status"
