#!/usr/bin/env bash
# Two ftpd nodes sharing PostgreSQL (users and shared state) and an S3-compatible store
# (files), checked as a user would with ftpc: a file put through node A is listed and
# downloaded byte-identical through node B; a quota holds across both; node A killed with
# kill -9 in the middle of an upload, `put -c` through node B completes it; `passwd` expires
# the cached logins on both; two users on different nodes chat; failed logins spread over A
# and B lock the address out.
#
# PostgreSQL is a throw-away cluster (initdb + pg_ctl from Debian's packages), the store is
# s3s-fs (cargo install --locked s3s-fs@0.14.1 --features binary), both on loopback ports in
# a temporary directory; the nodes share one certificate, as behind a TCP load balancer.
#
# Usage: scripts/cluster.sh   (as root it runs PostgreSQL as the `postgres` user)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/postgres.sh
find_postgres
s3s_fs=${S3S_FS:-$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")}
[ -x "$s3s_fs" ] || { echo "s3s-fs is not installed (cargo install --locked s3s-fs@0.14.1 --features binary)"; exit 1; }
cargo build --release --locked -q
bin=$PWD/target/release
work=$(mktemp -d)
declare -A pid port
cleanup() {
  for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  stop_postgres "$work"
  rm -rf "$work"
}
trap cleanup EXIT
wait_port() { until (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null; do sleep 0.1; done; }
pass=0
fail=0
check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi
}

# PostgreSQL and the object store.
start_postgres "$work"
export FTPD_USERS="$pg_url"
s3_port=$(free_port)
mkdir -p "$work/s3/cluster"
"$s3s_fs" --host 127.0.0.1 --port "$s3_port" --access-key cluster --secret-key cluster-secret \
  "$work/s3" >"$work/s3.log" 2>&1 &
pid[s3]=$!
disown  # no "Killed" notes from bash when they are stopped
wait_port "$s3_port"
export AWS_ENDPOINT="http://127.0.0.1:$s3_port" AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true \
  AWS_ACCESS_KEY_ID=cluster AWS_SECRET_ACCESS_KEY=cluster-secret

# Users, and one certificate for both nodes.
echo alice-pw | "$bin/ftpd" adduser alice --password-stdin >/dev/null
echo bob-pw | "$bin/ftpd" adduser bob --password-stdin >/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=ftpd \
  -addext "subjectAltName=IP:127.0.0.1" -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
port[a]=$(free_port)
port[b]=$(free_port)
start_node() { # start_node NAME
  mkdir -p "$work/$1"
  (cd "$work/$1" && exec "$bin/ftpd" serve --root s3://cluster/files \
     --listen "127.0.0.1:${port[$1]}" --cert "$work/cert.pem" --key "$work/key.pem" \
     --time-listen none --max-login-failures 3 --lockout 60 \
     --state-dir "$work/$1/state" --audit-log "$work/$1/audit.jsonl" 2>>"$work/$1/log") &
  pid[$1]=$!
  disown
  wait_port "${port[$1]}"
}
start_node a
start_node b

export XDG_CONFIG_HOME="$work/client"
a=(env "$bin/ftpc" --server "127.0.0.1:${port[a]}")
b=(env "$bin/ftpc" --server "127.0.0.1:${port[b]}")
echo alice-pw | "${a[@]}" --accept-new login alice --password-stdin >/dev/null 2>&1
echo alice-pw | "${b[@]}" --accept-new login alice --password-stdin >/dev/null 2>&1
head -c $((3 * 1024 * 1024 + 17)) /dev/urandom > "$work/small.bin"
head -c $((24 * 1024 * 1024)) /dev/urandom > "$work/24M.bin"
head -c $((512 * 1024 * 1024)) /dev/urandom > "$work/big.bin"

# 1. Put through A, list and get through B.
"${a[@]}" mkdir shared
"${a[@]}" put "$work/small.bin" shared/small.bin
"${a[@]}" put "$work/24M.bin" shared/24M.bin
check "a file put through A is listed through B" \
  bash -c '"$@" ls shared | grep -qx "24M.bin"' _ "${b[@]}"
"${b[@]}" get shared/24M.bin "$work/back.bin"
check "and comes back byte-identical through B" cmp -s "$work/24M.bin" "$work/back.bin"

# 2. A quota over both nodes: 40 MiB, 24 used through A; 24 more through B is refused.
"$bin/ftpd" quota alice 40M >/dev/null
check "a quota holds across nodes (B refuses what A's files leave no room for)" \
  bash -c 'out=$("${@:2}" put "$1" again.bin 2>&1) && exit 1; grep -q "quota exceeded" <<<"$out"' \
  _ "$work/24M.bin" "${b[@]}"
"$bin/ftpd" quota alice none >/dev/null
"${a[@]}" rm shared/24M.bin

# 3. kill -9 of A in the middle of an upload; put -c through B finishes it.
"${a[@]}" put "$work/big.bin" big.bin >/dev/null 2>&1 &
uploader=$!
# The upload's resume state appears in the database once its first part is stored.
psql=("$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U ftpd -d postgres -tAc)
until [ "$("${psql[@]}" "SELECT count(*) FROM ftpd_uploads" 2>/dev/null)" -gt 0 ] 2>/dev/null; do
  sleep 0.05
done
kill -9 "${pid[a]}"
wait "$uploader" 2>/dev/null || true
check "an upload cut by kill -9 of its node leaves nothing visible" \
  bash -c '! "$@" ls | grep -qx big.bin' _ "${b[@]}"
"${b[@]}" put -c "$work/big.bin" big.bin
sent=$(grep '"put"' "$work/b/audit.jsonl" | tail -1 | python3 -c 'import json,sys; print(json.loads(sys.stdin.read()).get("bytes", -1))')
check "put -c through B resumed A's upload (sent $sent of $((512 * 1024 * 1024)) bytes)" \
  test "$sent" -lt $((512 * 1024 * 1024))
"${b[@]}" get big.bin "$work/big.back"
check "and the file is whole" cmp -s "$work/big.bin" "$work/big.back"
rm -f "$work/big.back"
start_node a

# 4. passwd expires the cached logins on both nodes.
echo alice-new | "$bin/ftpd" passwd alice --password-stdin >/dev/null
check "after passwd, A refuses the cached login" bash -c '"$@" ls >/dev/null 2>&1; [ $? -eq 3 ]' _ "${a[@]}"
check "after passwd, B refuses the cached login" bash -c '"$@" ls >/dev/null 2>&1; [ $? -eq 3 ]' _ "${b[@]}"
echo alice-new | "${b[@]}" login alice --password-stdin >/dev/null 2>&1
check "the new password works on B" bash -c '"$@" ls >/dev/null' _ "${b[@]}"

# 5. Two users on different nodes chat: alice through B, bob through A.
echo bob-pw | "${a[@]}" login bob --password-stdin >/dev/null 2>&1
"${b[@]}" friends add bob >/dev/null
"${a[@]}" friends add alice >/dev/null
"${b[@]}" send bob "hello across nodes" >/dev/null
check "a message sent through B reaches its recipient through A" \
  bash -c '"$@" inbox --wait 10 | grep -q "hello across nodes"' _ "${a[@]}"
"${a[@]}" send alice "and back" >/dev/null
check "and the answer comes back through B" \
  bash -c '"$@" inbox --wait 10 | grep -q "and back"' _ "${b[@]}"

# 6. Failed logins spread over A and B lock the address out of both.
for node in a b a; do
  if [ "$node" = a ]; then cmd=("${a[@]}"); else cmd=("${b[@]}"); fi
  echo wrong | "${cmd[@]}" login bob --password-stdin >/dev/null 2>&1 || true
done
check "three failures over two nodes lock the address out (right password refused)" \
  bash -c '! (echo bob-pw | "$@" login bob --password-stdin >/dev/null 2>&1)' _ "${b[@]}"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
