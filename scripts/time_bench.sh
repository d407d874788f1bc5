#!/usr/bin/env bash
# The time service under load, beside chronyd and a raw UDP echo (the physical limit), in
# one run on this machine: requests answered per second and the round trip at p50/p99 seen by
# the same load generator (examples/time_load.rs: SOCKETS closed-loop clients on loopback).
# Rate limiting is off on both servers (chrony's is off unless configured).
#
# Usage: scripts/time_bench.sh [SOCKETS] [SECS] [ROUNDS]   (needs chronyd; loopback only;
# stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
sockets=${1:-32}
secs=${2:-3}
rounds=${3:-3}
cargo build --release --quiet --bins --examples
bin="$PWD/target/release"
load="$bin/examples/time_load"
chronyd=$(command -v chronyd || echo /usr/sbin/chronyd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
echo_port=$(free_port); ours_port=$(free_port); chrony_port=$(free_port)

"$load" --echo "127.0.0.1:$echo_port" 2>/dev/null & pids+=($!)
echo pw | "$bin/ftpd" adduser bench --password-stdin --iterations 4096 >/dev/null
"$bin/ftpd" serve --plaintext --listen 127.0.0.1:0 --time-listen "127.0.0.1:$ours_port" \
  --time-rate-limit off --time-local-stratum 5 2>ftpd.log & pids+=($!)
printf 'local stratum 8\nallow 127.0.0.1\nport %s\ncmdport 0\npidfile %s/chronyd.pid\n' \
  "$chrony_port" "$work" > chrony.conf
"$chronyd" -x -d -u root -f "$work/chrony.conf" 2>chronyd.log & pids+=($!)
# Ready when each answers.
for port in "$echo_port" "$ours_port" "$chrony_port"; do
  for _ in $(seq 100); do
    "$load" "127.0.0.1:$port" 1 0.05 | grep -qv '^0 replies' && break
  done
done

echo "load: $sockets sockets, ${secs}s each, $rounds rounds (interleaved, the order rotated"
echo "each round so that no server always runs first or right after another)"
targets=(echo:$echo_port ftpd:$ours_port chronyd:$chrony_port)
for round in $(seq "$rounds"); do
  shift_by=$(( (round - 1) % 3 ))
  for target in "${targets[@]:shift_by}" "${targets[@]:0:shift_by}"; do
    name=${target%%:*}; port=${target##*:}
    printf 'round %s %-8s %s\n' "$round" "$name" "$("$load" "127.0.0.1:$port" "$sockets" "$secs")"
  done
done | tee rounds.txt
# Means over the rounds, and ftpd as a ratio of chronyd and of the echo.
awk '{ rate[$3] += $4; p50[$3] += $7; p99[$3] += $10; n[$3]++ }
  END {
    for (t in n) printf "mean %-8s %.0f replies/s, p50 %.1f us, p99 %.1f us\n", t, rate[t]/n[t], p50[t]/n[t], p99[t]/n[t]
    printf "ftpd/chronyd: rate %.3fx, p99 %.3fx; ftpd/echo: rate %.3fx\n",
      rate["ftpd"]/rate["chronyd"], p99["ftpd"]/p99["chronyd"], rate["ftpd"]/rate["echo"]
  }' rounds.txt
