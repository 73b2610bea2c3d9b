#!/usr/bin/env bash
# Three herald nodes against three nats-server 2.9 nodes with JetStream, same machine, same
# client, same run (see bench/compare_js_cluster.py): R1 and R3 publish with acks and pull
# consume, and the time from kill -9 of an R3 leader to the next acknowledged publish.
#
#   bench/compare-js-cluster.sh              # 3 rounds per row, 3 kills per server
#   ROUNDS=1 KILLS=1 bench/compare-js-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v nats-server >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nats-server >/dev/null
fi
python3 -c "import nats" 2>/dev/null || pip install -q nats-py
cargo build --release -q -p herald-cli
exec python3 bench/compare_js_cluster.py target/release/herald "$(command -v nats-server)"
