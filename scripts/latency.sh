#!/usr/bin/env bash
# What a user on a real network waits for: whole `ftpc` commands (a new process each, with a
# cached login) against ftpd behind a relay that delays everything by DELAY_MS each way
# (scripts/delay_relay.py), so that a round trip costs 2 x DELAY_MS. Prints each command's
# median time through the relay and straight to the server, and the difference in round
# trips: how often the command waits for the network (the TLS handshake, the login, the
# command itself; TCP's own handshake is not delayed, as the relay accepts at once).
#
# Usage: scripts/latency.sh [DELAY_MS] [RUNS] (defaults 5 and 10); FTPREP_BIN=DIR measures
# the binaries in DIR instead of this tree's release build. Temporary directory and
# loopback only; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
delay=${1:-5}
runs=${2:-10}
if [ -n "${FTPREP_BIN:-}" ]; then
  bin=$FTPREP_BIN
else
  cargo build --release --quiet --bins
  bin="$PWD/target/release"
fi
relay="$PWD/scripts/delay_relay.py"
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
echo pw | "$bin/ftpd" adduser bench --users users.db --password-stdin >/dev/null
head -c 4096 /dev/urandom > small
base=$((40000 + RANDOM % 10000))
for mode in tls plain; do
  port=$base; flags=()
  [ "$mode" = plain ] && { port=$((base + 2)); flags=(--plaintext); }
  mkdir -p "$mode"
  (cd "$mode" && exec "$bin/ftpd" serve --time-listen none --chat-listen none \
     --listen "127.0.0.1:$port" --users ../users.db "${flags[@]}" 2>server.log) &
  pids+=($!)
  python3 "$relay" $((port + 1)) "$port" "$delay" > "$mode/relay.log" &
  pids+=($!)
done
for mode in tls plain; do
  for _ in $(seq 200); do
    grep -q listening "$mode/server.log" 2>/dev/null && grep -q relaying "$mode/relay.log" && break
    sleep 0.05
  done
done

ftpc() { # ftpc MODE VIA ARGS...: a whole ftpc process, through the relay or straight
  local mode=$1 via=$2; shift 2
  local port=$base
  [ "$mode" = plain ] && port=$((base + 2))
  [ "$via" = relay ] && port=$((port + 1))
  local flag=()
  [ "$mode" = plain ] && flag=(--plaintext)
  XDG_CONFIG_HOME="$work/$mode/config-$via" "$bin/ftpc" --server "127.0.0.1:$port" "${flag[@]}" "$@"
}
for mode in tls plain; do
  for via in relay straight; do
    echo pw | ftpc "$mode" "$via" --accept-new login bench --password-stdin >/dev/null 2>&1
  done
done
ms() { # ms CMD...: the milliseconds CMD takes; a failure stops the script
  local t0
  t0=$(date +%s%N)
  "$@" >/dev/null || { echo "failed: $*" >&2; exit 1; }
  echo $((($(date +%s%N) - t0) / 1000))
}
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] / 1000 }'; }

printf 'round trip %s ms (the relay holds everything %s ms each way); medians of %s runs\n' \
  "$((2 * delay))" "$delay" "$runs"
printf '%-14s %28s %28s\n' "" "TLS" "plaintext"
printf '%-14s %28s %28s\n' "new process:" "relayed straight  trips" "relayed straight  trips"
row() { # row LABEL ARGS...: N in an ARG becomes the run's number
  local label=$1; shift
  local line
  line=$(printf '%-14s' "$label")
  for mode in tls plain; do
    local relayed=() straight=()
    for n in $(seq "$runs"); do
      relayed+=("$(ms ftpc "$mode" relay "${@//N/r$n}")")
      straight+=("$(ms ftpc "$mode" straight "${@//N/s$n}")")
    done
    local r s
    r=$(printf '%s\n' "${relayed[@]}" | median)
    s=$(printf '%s\n' "${straight[@]}" | median)
    line+=$(printf ' %8.1f ms %6.1f ms %6.1f' "$r" "$s" \
      "$(awk -v r="$r" -v s="$s" -v d="$delay" 'BEGIN { print (r - s) / (2 * d) }')")
  done
  echo "$line"
}
row "ls" ls
row "mkdir" mkdir dN
row "put 4 KiB" put small fN
row "get 4 KiB" get -f fN "$work/back"
