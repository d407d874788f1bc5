#!/usr/bin/env bash
# The object-store back-end against the disk back-end, in the same run: `ftpc put` and
# `ftpc get` of one SIZE MiB file through an `ftpd serve --root s3://...` and an
# `ftpd serve --root DIR`, and the limit for the first: the same file copied straight into
# and out of the same S3 server with the same client library (`examples/s3_copy.rs`,
# object_store's own concurrent multipart writer). The S3 server is s3s-fs (as in the
# tests); its data, the disk back-end's root and the files all live on tmpfs, so the disk
# is out of the comparison. Both servers run --plaintext, as the direct copy is plain HTTP.
#
# Usage: scripts/objects_bench.sh [SIZE_MIB] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
rounds=${2:-3}
warm_mib=256
. scripts/rounds.sh

s3s_fs=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
[ -x "$s3s_fs" ] || { echo "s3s-fs is not installed (cargo install --locked s3s-fs@0.14.1 --features binary)"; exit 1; }
cargo build --release --locked -q
cargo build --release --locked -q --example s3_copy
bin=$PWD/target/release
work=$(mktemp -d -p /dev/shm)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work" "$rounds_file"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

s3_port=$(free_port)
mkdir -p "$work/s3/bench"
"$s3s_fs" --host 127.0.0.1 --port "$s3_port" --access-key bench --secret-key bench-secret \
  "$work/s3" >"$work/s3.log" 2>&1 &
pids+=($!)
export AWS_ENDPOINT="http://127.0.0.1:$s3_port" AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true \
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret
until (echo > "/dev/tcp/127.0.0.1/$s3_port") 2>/dev/null; do sleep 0.1; done

mkdir -p "$work/users"
echo pw | "$bin/ftpd" adduser bench --users "$work/users/users.db" --password-stdin >/dev/null
declare -A port
start() { # start NAME ROOT
  local name=$1 root=$2
  port[$name]=$(free_port)
  mkdir -p "$work/$name"
  (cd "$work/$name" && exec "$bin/ftpd" serve --users "$work/users/users.db" --plaintext \
     --listen "127.0.0.1:${port[$name]}" --time-listen none --chat-listen none \
     --root "$root" --state-dir "$work/$name/state" 2>"$work/$name.log") &
  pids+=($!)
  until (echo > "/dev/tcp/127.0.0.1/${port[$name]}") 2>/dev/null; do sleep 0.1; done
}
start disk "$work/disk/root"
start objects "s3://bench/ftpd"

export XDG_CONFIG_HOME="$work/client"
for name in disk objects; do
  echo pw | "$bin/ftpc" --server "127.0.0.1:${port[$name]}" --plaintext login bench --password-stdin >/dev/null 2>&1
done
head -c "$((size_mib * 1024 * 1024))" /dev/urandom > "$work/file"
ftpc() { local name=$1; shift; "$bin/ftpc" --server "127.0.0.1:${port[$name]}" --plaintext "$@"; }

for round in $(seq 1 "$rounds"); do
  for name in disk objects; do
    record "$name-put" "$round" "$(timed ftpc "$name" put -f "$work/file" big)"
    rm -f "$work/back"
    record "$name-get" "$round" "$(timed ftpc "$name" get big "$work/back")"
    cmp -s "$work/file" "$work/back" || { echo "$name: the file came back different" >&2; exit 1; }
  done
  record direct-put "$round" "$(timed "$bin/examples/s3_copy" put "$work/file" s3://bench/direct/big)"
  rm -f "$work/back"
  record direct-get "$round" "$(timed "$bin/examples/s3_copy" get s3://bench/direct/big "$work/back")"
  cmp -s "$work/file" "$work/back" || { echo "direct: the file came back different" >&2; exit 1; }
done

mbs() { awk -v s="$1" -v m="$size_mib" 'BEGIN { printf "%.0f", m * 1.048576 / s }'; }
printf '%-44s %10s %10s\n' "$size_mib MiB, median of $rounds rounds, MB/s" put get
printf '%-44s %10s %10s\n' "ftpd, disk back-end" "$(mbs "$(median disk-put)")" "$(mbs "$(median disk-get)")"
printf '%-44s %10s %10s\n' "ftpd, object-store back-end (s3s-fs)" "$(mbs "$(median objects-put)")" "$(mbs "$(median objects-get)")"
printf '%-44s %10s %10s\n' "direct copy into s3s-fs (object_store)" "$(mbs "$(median direct-put)")" "$(mbs "$(median direct-get)")"
# vs BASE NAME: the median over rounds of BASE's time / NAME's time, i.e. NAME's speed as a
# share of BASE's.
echo "object-store back-end against the direct copy: put $(vs direct-put objects-put | awk '{printf "%.2f", $1}')x," \
  "get $(vs direct-get objects-get | awk '{printf "%.2f", $1}')x; against the disk back-end:" \
  "put $(vs disk-put objects-put | awk '{printf "%.2f", $1}')x, get $(vs disk-get objects-get | awk '{printf "%.2f", $1}')x"
