#!/usr/bin/env bash
# The browsing load test against the embedded fleet, start to finish: builds both binaries in
# release, starts `pillivery` with 40 000 seeded items in a throwaway data folder on a free port,
# waits until the gateway answers, runs the closed-loop (throughput) and open-loop (latency)
# scenarios of SPEC section 11, then the nginx baseline when nginx is installed, stops the fleet
# and prints the summary table. See load/README.md.
#
# Knobs (environment): ITEMS (40000), USERS (100), RUN_TIME (30s, closed loop), OPEN_SECONDS (30),
# WARMUP_SECONDS (5), CATEGORY_RATE (2000), SEARCH_RATE (500), DETAIL_RATE (1000),
# BROWSE_RATE (1000), SCENARIOS ("browse category-cached search-uncached detail"),
# NGINX (auto|no), OUT (results folder; a new temporary one by default), FLEET (a prebuilt
# pillivery binary; skips building the fleet).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pillivery-target}"
ITEMS="${ITEMS:-40000}"
USERS="${USERS:-100}"
RUN_TIME="${RUN_TIME:-30s}"
OPEN_SECONDS="${OPEN_SECONDS:-30}"
WARMUP_SECONDS="${WARMUP_SECONDS:-5}"
CATEGORY_RATE="${CATEGORY_RATE:-2000}"
SEARCH_RATE="${SEARCH_RATE:-500}"
DETAIL_RATE="${DETAIL_RATE:-1000}"
BROWSE_RATE="${BROWSE_RATE:-1000}"
SCENARIOS="${SCENARIOS:-browse category-cached search-uncached detail}"
NGINX="${NGINX:-auto}"
OUT="${OUT:-$(mktemp -d -t pillivery-load.XXXXXX)}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"

log() { printf '\n== %s\n' "$*"; }

log "build (release; two invocations so goose's features never reach the fleet's build)"
# FLEET=/path/to/pillivery runs a fleet binary built elsewhere (another checkout, a commit).
if [[ -z "${FLEET:-}" ]]; then
    cargo build --release -p pillivery
    FLEET="$CARGO_TARGET_DIR/release/pillivery"
fi
cargo build --release -p pillivery-load
LOAD="$CARGO_TARGET_DIR/release/pillivery-load"

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

{
    echo "# pillivery-load run $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo
    echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "- nproc: $(nproc); memory: $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}')"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- items: $ITEMS; closed loop: $USERS users, $RUN_TIME; open loop: ${OPEN_SECONDS}s after ${WARMUP_SECONDS}s warm-up"
    echo
} > "$SUMMARY"

log "start the embedded fleet: $ITEMS items in $DATA"
# Port 0: the gateway takes a free port and the fleet prints it, so there is no race for it.
# The catalog logs its seed at info; everything else only warns, so logging costs nothing
# under load.
started=$(date +%s.%N)
"$FLEET" --http-port 0 --data-dir "$DATA" --seed-items "$ITEMS" \
    --log-format json --log-level "warn,catalog=info" > "$OUT/fleet.log" 2>&1 &
FLEET_PID=$!
HOST=""
for _ in $(seq 1 600); do
    if ! kill -0 "$FLEET_PID" 2>/dev/null; then
        echo "the fleet stopped while starting; its log:" >&2
        cat "$OUT/fleet.log" >&2
        exit 1
    fi
    HOST=$(grep -o 'Pillivery is running at http://[0-9.:]*' "$OUT/fleet.log" | awk '{print $NF}' || true)
    [[ -n "$HOST" ]] && break
    sleep 0.5
done
[[ -n "$HOST" ]] || { echo "the fleet did not start within 300 s" >&2; exit 1; }
ready=$(date +%s.%N)
# Ready means answering through the gateway, not just listening.
for _ in $(seq 1 120); do
    curl -fsS -o /dev/null "$HOST/api/items/main" && break
    sleep 0.5
done
curl -fsS -o /dev/null "$HOST/api/items/main"
seed_line=$(grep -o '"elapsed_ms":[0-9]*' "$OUT/fleet.log" | head -1 || true)
total=$(curl -fsS "$HOST/api/items?size=1" | grep -o '"totalElements":[0-9]*' || true)
printf -- '- fleet start to ready: %.1f s (seed %s; catalog %s)\n\n' \
    "$(awk -v a="$started" -v b="$ready" 'BEGIN {print b - a}')" "${seed_line:-not logged}" "${total:-?}" | tee -a "$SUMMARY"

rate_of() {
    case "$1" in
        category-cached) echo "$CATEGORY_RATE" ;;
        search-uncached) echo "$SEARCH_RATE" ;;
        detail) echo "$DETAIL_RATE" ;;
        *) echo "$BROWSE_RATE" ;;
    esac
}

for scenario in $SCENARIOS; do
    log "closed loop: $scenario, $USERS users, $RUN_TIME"
    "$LOAD" closed "$scenario" --host "$HOST" --items "$ITEMS" --users "$USERS" \
        --run-time "$RUN_TIME" --summary "$SUMMARY" \
        -- --report-file "$OUT/closed-$scenario.html" > "$OUT/closed-$scenario.log" 2>&1 \
        || { tail -40 "$OUT/closed-$scenario.log" >&2; exit 1; }
    sed -n '/^| label/,$p' "$OUT/closed-$scenario.log"
done

for scenario in $SCENARIOS; do
    rate=$(rate_of "$scenario")
    log "open loop: $scenario at $rate/s for ${OPEN_SECONDS}s"
    "$LOAD" open "$scenario" --host "$HOST" --items "$ITEMS" --rate "$rate" \
        --seconds "$OPEN_SECONDS" --warmup-seconds "$WARMUP_SECONDS" --summary "$SUMMARY" \
        > "$OUT/open-$scenario.log" 2>&1 || { tail -40 "$OUT/open-$scenario.log" >&2; exit 1; }
    sed -n '/^| label/,$p' "$OUT/open-$scenario.log"
done

if [[ "$NGINX" != no ]] && command -v nginx >/dev/null 2>&1; then
    log "nginx baseline: the same cached category page bytes from a file"
    curl -fsS -o "$OUT/category-page.json" "$HOST/api/items?category=EYE&sort=SALES&page=1&size=20"
    # The fleet is stopped first so nginx has the machine the fleet had.
    kill -TERM "$FLEET_PID" && wait "$FLEET_PID" || true
    FLEET_PID=""
    USERS="$USERS" RUN_TIME="$RUN_TIME" OPEN_SECONDS="$OPEN_SECONDS" \
        WARMUP_SECONDS="$WARMUP_SECONDS" RATE="$CATEGORY_RATE" SUMMARY="$SUMMARY" OUT="$OUT" \
        LOAD="$LOAD" load/nginx-baseline.sh "$OUT/category-page.json"
else
    log "nginx baseline skipped (NGINX=no or nginx not installed: apt-get install -y nginx-light)"
fi

log "summary ($SUMMARY; goose reports and logs in $OUT)"
cat "$SUMMARY"
