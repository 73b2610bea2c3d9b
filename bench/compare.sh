#!/usr/bin/env bash
# Side-by-side benchmark of herald and nats-server 2.9 (Debian) on this machine, same client,
# same run: installs nats-server if missing, builds herald in release mode, starts both on
# free loopback ports and prints a Markdown table with ratios (see bench/compare.py).
#
#   bench/compare.sh            # every row, 3 rounds, medians
#   ROUNDS=1 bench/compare.sh   # quicker
#   ONLY=cluster bench/compare.sh   # only the 3-node cluster rows (ONLY=single: the others)
#   ONLY=js bench/compare.sh        # only the JetStream rows (streams on disk)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nats-server >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nats-server >/dev/null
fi
cargo build --release -q -p herald-cli
ulimit -n 8192 2>/dev/null || ulimit -n "$(ulimit -Hn)"
exec python3 bench/compare.py target/release/herald "$(command -v nats-server)"
