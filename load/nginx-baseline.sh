#!/usr/bin/env bash
# SPEC section 11's yardstick for the cached category page: nginx serving the same response
# bytes from a file on the same machine, measured with the same tool and the same scenario
# (`category-cached` asks for the same path, which nginx answers with the file).
#
# Usage: load/nginx-baseline.sh BODY_FILE
#   BODY_FILE: the gateway's answer to /api/items?category=EYE&sort=SALES&page=1&size=20, e.g.
#   curl -o page.json 'http://127.0.0.1:8080/api/items?category=EYE&sort=SALES&page=1&size=20'
# Environment: USERS (100), RUN_TIME (30s), RATE (2000), OPEN_SECONDS (30), WARMUP_SECONDS (5),
# SUMMARY (a Markdown file to append to), OUT (where logs go), LOAD (the pillivery-load binary;
# built in release when unset). Needs nginx (Debian: apt-get install -y nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."

BODY="${1:?usage: load/nginx-baseline.sh BODY_FILE}"
[[ -s "$BODY" ]] || { echo "$BODY is empty or missing" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is not installed (apt-get install -y nginx-light)" >&2; exit 1; }
USERS="${USERS:-100}"
RUN_TIME="${RUN_TIME:-30s}"
RATE="${RATE:-2000}"
OPEN_SECONDS="${OPEN_SECONDS:-30}"
WARMUP_SECONDS="${WARMUP_SECONDS:-5}"
OUT="${OUT:-$(mktemp -d -t pillivery-nginx.XXXXXX)}"
mkdir -p "$OUT"
SUMMARY="${SUMMARY:-$OUT/summary.md}"
if [[ -z "${LOAD:-}" ]]; then
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/pillivery-target}"
    cargo build --release -p pillivery-load
    LOAD="$CARGO_TARGET_DIR/release/pillivery-load"
fi

SITE="$(mktemp -d -t pillivery-nginx-site.XXXXXX)"
# nginx's workers run as nobody when the master is root: they must be able to read the site.
chmod 755 "$SITE"
cp "$BODY" "$SITE/page.json"
chmod 644 "$SITE/page.json"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# One worker per core, as the fleet gets the whole machine; no access log, as the fleet logs
# no request either; keep-alive as the load tool reuses connections.
cat > "$SITE/nginx.conf" <<EOF
worker_processes auto;
pid $SITE/nginx.pid;
error_log $SITE/error.log warn;
daemon on;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $SITE/client_body;
    proxy_temp_path $SITE/proxy;
    fastcgi_temp_path $SITE/fastcgi;
    uwsgi_temp_path $SITE/uwsgi;
    scgi_temp_path $SITE/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    types { }
    default_type application/json;
    # The gateway's Content-Type, application/json; charset=utf-8.
    charset utf-8;
    charset_types application/json;
    server {
        listen 127.0.0.1:$PORT;
        # Whatever the query string, the one captured page.
        location = /api/items {
            root $SITE;
            try_files /page.json =404;
        }
    }
}
EOF
nginx -c "$SITE/nginx.conf" -p "$SITE"
stop_nginx() {
    if [[ -s "$SITE/nginx.pid" ]]; then
        kill -QUIT "$(cat "$SITE/nginx.pid")" 2>/dev/null || true
        sleep 0.5
    fi
    rm -rf "$SITE"
}
trap stop_nginx EXIT

HOST="http://127.0.0.1:$PORT"
curl -fsS -o "$SITE/check.json" "$HOST/api/items?category=EYE&sort=SALES&page=1&size=20"
cmp -s "$SITE/check.json" "$BODY" || { echo "nginx does not serve the captured bytes" >&2; exit 1; }
echo "nginx on $HOST serves $(wc -c < "$BODY") bytes"

printf '\n== nginx, closed loop: %s users, %s\n' "$USERS" "$RUN_TIME"
"$LOAD" closed category-cached --host "$HOST" --label nginx --users "$USERS" \
    --run-time "$RUN_TIME" --summary "$SUMMARY" > "$OUT/nginx-closed.log" 2>&1 \
    || { tail -40 "$OUT/nginx-closed.log" >&2; exit 1; }
sed -n '/^| label/,$p' "$OUT/nginx-closed.log"

printf '\n== nginx, open loop: %s/s for %ss\n' "$RATE" "$OPEN_SECONDS"
"$LOAD" open category-cached --host "$HOST" --label nginx --rate "$RATE" \
    --seconds "$OPEN_SECONDS" --warmup-seconds "$WARMUP_SECONDS" --summary "$SUMMARY" \
    > "$OUT/nginx-open.log" 2>&1 || { tail -40 "$OUT/nginx-open.log" >&2; exit 1; }
sed -n '/^| label/,$p' "$OUT/nginx-open.log"
