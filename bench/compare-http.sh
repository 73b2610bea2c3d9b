#!/usr/bin/env bash
# HTTP side by side: herald's HTTP + SSE door and nginx with Debian's nchan module, same
# client, same run (see bench/compare_http.py). Installs nginx and libnginx-mod-nchan if
# missing (benchmark-only peers: not in CI), builds herald in release mode.
#
#   bench/compare-http.sh            # 3 rounds, medians
#   ROUNDS=1 bench/compare-http.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null || ! ls /usr/lib/nginx/modules/ngx_nchan_module.so >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
fi
cargo build --release -q -p herald-cli
ulimit -n 16384 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 bench/compare_http.py target/release/herald "$(command -v nginx)" /usr/lib/nginx/modules/ngx_nchan_module.so
