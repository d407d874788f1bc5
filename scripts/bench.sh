#!/usr/bin/env bash
# Benchmarks, all in one run on this machine, each beside its baseline:
#   - put/get of a SIZE file (default 1 GiB) over plaintext and TLS, beside a raw TCP copy of
#     the same bytes on loopback (file to socket to file): the physical limit here;
#   - latency of a whole `ftpc mkdir` process with a cached login;
#   - server memory per idle authenticated session (SESSIONS, default 10,000);
#   - the load generator (`ftpc bench`, 64 clients, 10 s).
# The server CPU per login is measured by `cargo bench --bench scram`.
#
# Transfers run ROUNDS times (default 5), each round the raw copy and then every transfer back
# to back; the table shows medians, and each ratio is the median of the per-round ratios.
#
# Usage: scripts/bench.sh [SIZE_MIB] [SESSIONS] [ROUNDS]. Temporary directory and loopback
# only; cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
sessions=${2:-10000}
rounds=${3:-5}
. scripts/rounds.sh
cargo build --release --quiet --bins --examples
bin="$PWD/target/release"
examples="$PWD/target/release/examples"
work=$(mktemp -d)
pids=()
cleanup() {
  restore_page_reporting
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work" "$rounds_file"
}
trap cleanup EXIT
pause_page_reporting
cd "$work"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

now() { date +%s.%N; }
calc() { awk "BEGIN { print $1 }"; }
rate() { calc "$size_mib / $1"; }

start_server() { # start_server NAME PORT [FLAGS...]
  local name=$1 port=$2; shift 2
  mkdir -p "$name"
  (cd "$name" && exec "$bin/ftpd" serve --time-listen none --listen "127.0.0.1:$port" --users ../users.db \
      --max-connections 30000 --max-connections-per-ip 30000 --max-sessions-per-user 30000 \
      "$@" 2>server.log) &
  pids+=($!)
  for _ in $(seq 200); do grep -q listening "$name/server.log" 2>/dev/null && return; sleep 0.05; done
  echo "server $name did not start"; cat "$name/server.log"; exit 1
}

echo pw | "$bin/ftpd" adduser bench --password-stdin >/dev/null
plain_port=$((20000 + RANDOM % 10000))
tls_port=$((plain_port + 1))
start_server plain "$plain_port" --plaintext
start_server tls "$tls_port"
head -c $((size_mib * 1024 * 1024)) /dev/urandom > data.bin
sync

login() { # login plain|tls
  if [ "$1" = plain ]; then
    echo pw | "$bin/ftpc" --server "127.0.0.1:$plain_port" --plaintext login bench --password-stdin 2>/dev/null
  else
    echo pw | "$bin/ftpc" --server "127.0.0.1:$tls_port" --accept-new login bench --password-stdin 2>/dev/null
  fi
}
warm_mib=$((size_mib * 3 / 2))
# Every put writes a new file, as the raw copy does; `timed` (scripts/rounds.sh) syncs and
# warms memory before each measurement.
for round in $(seq "$rounds"); do
  record raw "$round" "$(timed "$examples/tcp_copy" data.bin raw-copy.bin)"
  rm -f raw-copy.bin
  for mode in plain tls; do
    login "$mode"
    record "put-$mode" "$round" "$(timed "$bin/ftpc" put data.bin data.bin)"
    record "get-$mode" "$round" "$(timed "$bin/ftpc" get -f data.bin back.bin)"
    cmp -s data.bin back.bin || { echo "get returned different bytes"; exit 1; }
    rm -f back.bin "$mode/ftp-root/bench/data.bin"
  done
done

# A whole `ftpc mkdir` process with a cached login (TLS), averaged.
runs=50
t0=$(now)
for i in $(seq $runs); do "$bin/ftpc" mkdir "m$i"; done
t1=$(now)
mkdir_ms=$(calc "($t1 - $t0) * 1000 / $runs")

# Memory per idle authenticated session (plaintext server).
echo pw | "$bin/ftpc" --server "127.0.0.1:$plain_port" --plaintext login bench --password-stdin 2>/dev/null
plain_pid=${pids[0]}
server_pid=$(pgrep -P "$plain_pid" ftpd || echo "$plain_pid")
rss() { awk '/VmRSS/ {print $2}' "/proc/$server_pid/status"; }
before=$(rss)
exec 3> >("$examples/idle_sessions" "$sessions" > idle.out 2> idle.err)
for _ in $(seq 3000); do grep -q ready idle.out 2>/dev/null && break; sleep 0.1; done
grep -q ready idle.out || { echo "idle sessions did not open"; cat idle.err; exit 1; }
after=$(rss)
exec 3>&-
per_session_kib=$(calc "($after - $before) / $sessions")

# The load generator, TLS.
echo pw | "$bin/ftpc" --server "127.0.0.1:$tls_port" login bench --password-stdin 2>/dev/null
"$bin/ftpc" bench --clients 64 -d 10 > load.txt 2>/dev/null || true

printf '\n%s\n' "$(page_reporting_state)"
printf '\n%d rounds, %d MiB each: medians (the ratio is the median of per-round ratios)\n' "$rounds" "$size_mib"
printf '%-34s %10s %12s %8s\n' "measure" "seconds" "MiB/s" "vs raw"
row() { # row LABEL NAME
  local t; t=$(median "$2")
  printf '%-34s %10.2f %12.1f %7.0f%%\n' "$1" "$t" "$(rate "$t")" "$(calc "100 * $(vs raw "$2")")"
}
row "raw TCP copy (file->socket->file)" raw
row "ftpc put, plaintext" put-plain
row "ftpc get, plaintext" get-plain
row "ftpc put, TLS" put-tls
row "ftpc get, TLS" get-tls
printf '\n%-34s %10.2f ms\n' "ftpc mkdir, whole process (TLS)" "$mkdir_ms"
printf '%-34s %10.1f KiB (RSS %d -> %d KiB)\n' "server memory per idle session" "$per_session_kib" "$before" "$after"
printf '\nftpc bench --clients 64 -d 10 (TLS, commands mix):\n'
cat load.txt
