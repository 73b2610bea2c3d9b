#!/usr/bin/env bash
# herald-client over three local herald servers, against one async-nats client on one
# server, same machine, same run (see bench/compare_clusters.py): the client's own cost per
# message (hashing, routing, the connection check) and the aggregate over three clusters.
#
#   bench/compare-clusters.sh          # 5 alternating rounds, medians
#   ROUNDS=1 MSGS=200000 bench/compare-clusters.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p herald-cli
exec python3 bench/compare_clusters.py target/release/herald
