#!/usr/bin/env bash
# The users in PostgreSQL against users.db, in the same run: logins/s (`ftpc bench`, 16
# clients, cached keys, each login followed by mkdir, ls, rmdir) over plaintext and TLS, and
# `put -r` of FILES files of 4 KiB (each upload checks the user's quota), against two
# `ftpd serve` that differ only in --users. PostgreSQL is a throw-away cluster (initdb +
# pg_ctl from Debian's packages) in a temporary directory on a loopback port.
#
# Usage: scripts/users_bench.sh [SECONDS] [ROUNDS] [FILES]   (as root it runs PostgreSQL
# as the `postgres` user, which refuses root)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-5}
rounds=${2:-3}
files=${3:-2000}
warm_mib=256
. scripts/rounds.sh

. scripts/postgres.sh
find_postgres
cargo build --release --locked -q
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_postgres "$work"
  rm -rf "$work" "$rounds_file"
}
trap cleanup EXIT

start_postgres "$work"
url=$pg_url

mkdir -p "$work/file" "$work/pg-node" "$work/src"
echo pw | "$bin/ftpd" adduser bench --users "$work/file/users.db" --password-stdin --quota 10G >/dev/null
echo pw | "$bin/ftpd" adduser bench --users "$url" --password-stdin --quota 10G >/dev/null
for d in $(seq 1 20); do
  mkdir -p "$work/src/d$d"
  for f in $(seq 1 $((files / 20))); do head -c 4096 /dev/urandom > "$work/src/d$d/f$f"; done
done

declare -A port
start() { # start NAME USERS [--plaintext]
  local name=$1 users=$2; shift 2
  port[$name]=$(free_port)
  (cd "$work/$name" && exec "$bin/ftpd" serve --users "$users" --listen "127.0.0.1:${port[$name]}" \
     --time-listen none --chat-listen none --max-sessions-per-user 1000 \
     --max-connections-per-ip 1000 --root "$work/$name/root" --state-dir "$work/$name/state" \
     "$@" 2>"$work/$name-$*.log") &
  pids+=($!)
}
start file "$work/file/users.db"
start pg-node "$url"
mkdir -p "$work/file-p" "$work/pg-node-p"
start file-p "$work/file/users.db" --plaintext
start pg-node-p "$url" --plaintext
for name in file pg-node file-p pg-node-p; do
  until (echo > "/dev/tcp/127.0.0.1/${port[$name]}") 2>/dev/null; do sleep 0.1; done
done

export XDG_CONFIG_HOME="$work/client"
login() { # login NAME [--plaintext]
  local name=$1; shift
  echo pw | "$bin/ftpc" --server "127.0.0.1:${port[$name]}" "$@" --accept-new login bench --password-stdin >/dev/null 2>&1
}
rate() { "$bin/ftpc" --server "127.0.0.1:${port[$1]}" bench --clients 16 -d "$seconds" 2>/dev/null | awk '/^logins/ {print $3}' | tr -d '/s'; }

for round in $(seq 1 "$rounds"); do
  for name in file pg-node; do
    login "$name"
    record "$name-tls" "$round" "$(rate "$name")"
    login "$name-p" --plaintext
    record "$name-plain" "$round" "$(rate "$name-p")"
    login "$name"
    "$bin/ftpc" rm -r tree >/dev/null 2>&1 || true
    record "$name-put" "$round" "$(timed "$bin/ftpc" put -r "$work/src/" tree)"
  done
done

printf '%-34s %12s %12s\n' "median of $rounds rounds" "users.db" "PostgreSQL"
printf '%-34s %12.0f %12.0f\n' "logins/s, TLS, 16 clients" "$(median file-tls)" "$(median pg-node-tls)"
printf '%-34s %12.0f %12.0f\n' "logins/s, plaintext, 16 clients" "$(median file-plain)" "$(median pg-node-plain)"
printf '%-34s %12.2f %12.2f\n' "put -r of $files files, s" "$(median file-put)" "$(median pg-node-put)"
# vs BASE NAME is the median of BASE/NAME: rates as PostgreSQL/users.db, times likewise.
echo "PostgreSQL against users.db (median of per-round ratios): logins/s $(vs pg-node-tls file-tls | awk '{printf "%.2f", $1}')x" \
  "(TLS), $(vs pg-node-plain file-plain | awk '{printf "%.2f", $1}')x (plaintext); put -r takes $(vs pg-node-put file-put | awk '{printf "%.2f", $1}')x as long"
