#!/usr/bin/env bash
# Runs the mesh demo N times in a row (default 30) and stops at the first
# run that does not exit 0, keeping its output. Not part of CI: it takes
# N x ~25 s. Usage: examples/mesh_demo/repeat.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-30}
cargo build --quiet -p meshguard-examples --bin mesh_demo
demo="${CARGO_TARGET_DIR:-target}/debug/mesh_demo"
log=$(mktemp)
for i in $(seq 1 "$runs"); do
    if "$demo" >"$log" 2>&1; then
        echo "run $i/$runs: exit 0 ($(grep -m1 'client requests' "$log" || true))"
    else
        code=$?
        echo "run $i/$runs: exit $code; its output:"
        cat "$log"
        exit 1
    fi
done
echo "$runs runs in a row exited 0"
