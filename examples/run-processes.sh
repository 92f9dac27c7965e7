#!/usr/bin/env bash
# The example system as separate processes around a development Consul
# (dev_registry, meshguard's Consul-compatible registry as a process):
# the registry, three user-service instances, the order service and the
# gateway, each found through the registry. Ctrl-C (or any exit) stops
# them all.
#
#   bash examples/run-processes.sh            # from the repository root
#
# Environment: CONSUL_PORT (8500), GATEWAY_PORT (8080), ORDER_PORT (8082),
# USER_PORTS ("8081 8083 8084"), METRICS_PORT (9090, the gateway's),
# CONSUL_HTTP_TOKEN (when set, the registry requires it and every service
# sends it; it is never printed), JWT_SECRET (the gateway's key; a random
# one is made for this run when unset), LOG_DIR (a temporary directory:
# each process's output). Uses a real Consul instead when CONSUL_HTTP_ADDR
# is set (the registry is then not started).
set -euo pipefail

cd "$(dirname "$0")/.."
CONSUL_PORT="${CONSUL_PORT:-8500}"
GATEWAY_PORT="${GATEWAY_PORT:-8080}"
ORDER_PORT="${ORDER_PORT:-8082}"
USER_PORTS="${USER_PORTS:-8081 8083 8084}"
METRICS_PORT="${METRICS_PORT:-9090}"
LOG_DIR="${LOG_DIR:-$(mktemp -d -t meshguard-processes.XXXXXX)}"
mkdir -p "$LOG_DIR"

echo "building the example binaries (once)..."
cargo build -q -p meshguard-examples \
  --bin dev_registry --bin user_service --bin order_service --bin gateway
BIN="$(cargo metadata --format-version 1 --no-deps \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/debug"

PIDS=()
stop() {
  trap - EXIT INT TERM
  if ((${#PIDS[@]})); then
    echo
    echo "stopping ${#PIDS[@]} processes..."
    # Services first (they deregister), the registry last.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
      kill -TERM "${PIDS[i]}" 2>/dev/null || true
      wait "${PIDS[i]}" 2>/dev/null || true
    done
  fi
  echo "logs are in $LOG_DIR"
}
trap stop EXIT
trap 'exit 130' INT TERM

start() { # start NAME COMMAND...: runs it in the background, output to LOG_DIR/NAME.log
  local name="$1"
  shift
  "$@" >"$LOG_DIR/$name.log" 2>&1 &
  PIDS+=("$!")
}

wait_for() { # wait_for WHAT URL [CURL ARGS...]: until URL answers 2xx, at most 30 s
  local what="$1" url="$2"
  shift 2
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$@" "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "$what did not come up; see $LOG_DIR" >&2
  exit 1
}

TOKEN_ARGS=()
CURL_TOKEN=()
if [[ -n "${CONSUL_HTTP_TOKEN:-}" ]]; then
  export CONSUL_HTTP_TOKEN
  TOKEN_ARGS=(--token-env CONSUL_HTTP_TOKEN)
  CURL_TOKEN=(-H "X-Consul-Token: $CONSUL_HTTP_TOKEN")
fi

if [[ -z "${CONSUL_HTTP_ADDR:-}" ]]; then
  start registry "$BIN/dev_registry" --port "$CONSUL_PORT" "${TOKEN_ARGS[@]}"
  export CONSUL_HTTP_ADDR="127.0.0.1:$CONSUL_PORT"
  wait_for "the registry" "http://$CONSUL_HTTP_ADDR/v1/status/leader"
  head -n 1 "$LOG_DIR/registry.log"
fi
CONSUL_URL="$CONSUL_HTTP_ADDR"
[[ "$CONSUL_URL" == *://* ]] || CONSUL_URL="http://$CONSUL_URL"

for port in $USER_PORTS; do
  PORT="$port" start "user-service-$port" "$BIN/user_service"
done
PORT="$ORDER_PORT" start order-service "$BIN/order_service"

if [[ -z "${JWT_SECRET:-}" ]]; then
  JWT_SECRET="$(head -c 48 /dev/urandom | base64 | tr -d '\n')"
fi
export JWT_SECRET
PORT="$GATEWAY_PORT" METRICS_PORT="$METRICS_PORT" start gateway "$BIN/gateway"

# Healthy when every instance's check passes in the registry.
expected=$(($(wc -w <<<"$USER_PORTS")))
for _ in $(seq 1 300); do
  users=$(curl -fsS "${CURL_TOKEN[@]}" \
    "$CONSUL_URL/v1/health/service/user-service?passing" 2>/dev/null | grep -o '"CheckID":"service:' | wc -l || true)
  orders=$(curl -fsS "${CURL_TOKEN[@]}" \
    "$CONSUL_URL/v1/health/service/order-service?passing" 2>/dev/null | grep -o '"CheckID":"service:' | wc -l || true)
  if ((users >= expected && orders >= 1)); then
    break
  fi
  sleep 0.1
done
if ((users < expected || orders < 1)); then
  echo "the services did not turn healthy in the registry; see $LOG_DIR" >&2
  exit 1
fi
wait_for "the gateway" "http://127.0.0.1:$GATEWAY_PORT/health"

ADMIN_TOKEN="$("$BIN/gateway" token admin --admin)"
cat <<MSG

running: registry $CONSUL_URL, user-service on $USER_PORTS, order-service on $ORDER_PORT,
gateway on $GATEWAY_PORT (metrics on $METRICS_PORT); logs in $LOG_DIR

  TOKEN='$ADMIN_TOKEN'
  curl -s localhost:$GATEWAY_PORT/api/users -H "authorization: Bearer \$TOKEN" \\
       -H 'content-type: application/json' -d '{"name":"Ada","email":"ada@example.com"}'
  curl -s "$CONSUL_URL/v1/catalog/services"   # add -H "X-Consul-Token: ..." with CONSUL_HTTP_TOKEN

Each user-service process keeps its own in-memory store (the one-process
demo shares one): a user is found on the instance that created it only.
Ctrl-C stops everything.
MSG
wait -n "${PIDS[@]}" || true
echo "a process exited; see $LOG_DIR" >&2
