#!/usr/bin/env bash
# Fault checks (not part of CI): kill -9 the server in the middle of an upload and `ftpd
# adduser` in the middle of its write, then check that nothing partial is visible and
# users.db is intact; fill a small filesystem and check that an upload fails with a clear
# "no space" error and leaves nothing behind.
#
# Usage: scripts/faults.sh   (builds the release binaries; the tmpfs check needs root)
# Everything happens in a temporary directory and on 127.0.0.1; it cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
bin="$PWD/target/release"
work=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null || true
  mountpoint -q "$work/small" 2>/dev/null && umount "$work/small"
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"
export HOME="$work/home" XDG_CONFIG_HOME="$work/home/.config"
pass=0
fail=0
check() { # check DESCRIPTION COMMAND...
  if "${@:2}"; then echo "ok   $1"; pass=$((pass + 1)); else echo "FAIL $1"; fail=$((fail + 1)); fi
}

start_server() { # start_server ROOT PORT
  "$bin/ftpd" serve --time-listen none --plaintext --listen "127.0.0.1:$2" --root "$1" --log-format json 2>>server.log &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q '"listening"' server.log 2>/dev/null && grep -q ":$2\"" server.log && return 0
    sleep 0.05
  done
  echo "server did not start"; cat server.log; exit 1
}

port=$((20000 + RANDOM % 20000))
echo pw | "$bin/ftpd" adduser alice --password-stdin --iterations 4096 >/dev/null
start_server root "$port"
echo pw | "$bin/ftpc" --server "127.0.0.1:$port" --plaintext login alice --password-stdin 2>/dev/null

# 1. kill -9 the server in the middle of an upload.
head -c $((300 * 1024 * 1024)) /dev/urandom > big.bin
"$bin/ftpc" put big.bin 2>/dev/null &
put_pid=$!
for _ in $(seq 200); do
  part=$(find root/alice -name '.ftprep-part-*' -size +10M 2>/dev/null | head -1)
  [ -n "$part" ] && break
  sleep 0.02
done
kill -9 "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
wait "$put_pid" 2>/dev/null || true
check "upload cut by kill -9 left a partial file behind" test -n "$part"
check "upload cut by kill -9: target not visible" test ! -e root/alice/big.bin
: > server.log
start_server root "$port"
check "after restart, ls shows no partial file" test -z "$("$bin/ftpc" ls)"
"$bin/ftpc" put -c big.bin 2>/dev/null
check "put -c completes the upload byte for byte" cmp -s big.bin root/alice/big.bin
check "no partial file remains" test -z "$(find root/alice -name '.ftprep-part-*')"

# 2. kill -9 ftpd adduser at random moments of its write.
for i in $(seq 40); do
  (echo "pw$i" | "$bin/ftpd" adduser "u$i" --password-stdin --iterations 4096 >/dev/null 2>&1) &
  victim=$!
  sleep "0.00$((RANDOM % 10))"
  kill -9 "$victim" 2>/dev/null || true
  wait "$victim" 2>/dev/null || true
done
check "users.db parses after 40 killed adduser runs" "$bin/ftpd" users >/dev/null
check "alice survived every killed rewrite" grep -q '^alice:' users.db
check "a later adduser still works" sh -c "echo pw | '$bin/ftpd' adduser after --password-stdin --iterations 4096 >/dev/null"

# 3. A full disk: a 4 MiB tmpfs as the storage root.
if [ "$(id -u)" = 0 ] && mkdir -p small && mount -t tmpfs -o size=4m tmpfs small 2>/dev/null; then
  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
  : > server.log
  start_server small "$port"
  head -c $((8 * 1024 * 1024)) /dev/urandom > eight.bin
  out=$("$bin/ftpc" put eight.bin 2>&1 || true)
  check "upload to a full disk fails with a clear error ($out)" grep -q "no space left on the server" <<<"$out"
  check "the full disk holds no partial file" test -z "$(find small -name '.ftprep-part-*')"
  check "the full disk holds no target" test ! -e small/alice/eight.bin
  head -c 1024 /dev/urandom > small.bin
  check "a small upload still works afterwards" "$bin/ftpc" put small.bin
else
  echo "skip full-disk check (needs root and tmpfs)"
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
