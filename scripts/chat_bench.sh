#!/usr/bin/env bash
# The chat under load, beside an IRC server (ngircd, Debian's package) and a raw UDP datagram
# on loopback (the physical limit), with one load generator (examples/chat_load.rs), in one
# run: messages delivered a second and end-to-end latency p50/p99 with PAIRS pairs in a
# closed loop (WINDOW messages in flight each), the latency at an offered 1,000 messages/s,
# and the server's memory per idle connected chat client with IDLE clients connected.
#
# Usage: scripts/chat_bench.sh [PAIRS] [SECS] [ROUNDS] [IDLE]   (needs ngircd; loopback
# only; stops what it started)
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-16}
secs=${2:-5}
rounds=${3:-3}
idle=${4:-10000}
window=${WINDOW:-4}
cargo build --release --quiet --bins --examples
bin="$PWD/target/release"
load="$bin/examples/chat_load"
ngircd=$(command -v ngircd || echo /usr/sbin/ngircd)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work" "${TMPDIR:-/tmp}"/chat_load-*
}
trap cleanup EXIT
cd "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port); irc_port=$(free_port)
users=$(( 2 * pairs > 100 ? 2 * pairs : 100 ))
for i in $(seq 0 $((users - 1))); do
  echo pw | "$bin/ftpd" adduser "b$i" --password-stdin --iterations 4096 >/dev/null
done
"$bin/ftpd" serve --listen "127.0.0.1:$port" --time-listen none --chat-rate off \
  --max-connections 30000 --max-connections-per-ip 30000 --max-sessions-per-user 30000 \
  2>ftpd.log & pids+=($!)
ftpd_pid=$!
cat > ngircd.conf <<CONF
[Global]
Name = bench.irc
Info = chat bench
Listen = 127.0.0.1
Ports = $irc_port
PidFile = $work/ngircd.pid
MotdPhrase = bench
ServerUID = $(id -u)
ServerGID = $(id -g)
[Limits]
MaxConnections = 0
MaxConnectionsIP = 0
MaxPenaltyTime = 0
MaxNickLength = 16
[Options]
PAM = no
Ident = no
DNS = no
CONF
"$ngircd" -n -f "$work/ngircd.conf" >ngircd.log 2>&1 & pids+=($!)
# Ready when each answers: ftpd says where its chat is; ngircd accepts a connection.
for _ in $(seq 300); do grep -q "chat (QUIC) answering" ftpd.log && break; sleep 0.1; done
for _ in $(seq 300); do (exec 3<>/dev/tcp/127.0.0.1/$irc_port) 2>/dev/null && break; sleep 0.1; done

echo "load: $pairs pairs, window $window, ${secs}s each, $rounds rounds (interleaved)"
for round in $(seq "$rounds"); do
  printf 'round %s %-7s %s\n' "$round" udp "$("$load" udp --pairs "$pairs" --secs "$secs" --window "$window")"
  printf 'round %s %-7s %s\n' "$round" ftprep "$("$load" ftprep "127.0.0.1:$port" "127.0.0.1:$port" --pairs "$pairs" --secs "$secs" --window "$window")"
  printf 'round %s %-7s %s\n' "$round" irc "$("$load" irc "127.0.0.1:$irc_port" --pairs "$pairs" --secs "$secs" --window "$window")"
done | tee rounds.txt
awk '{ rate[$3] += $4; p50[$3] += $7; p99[$3] += $10; n[$3]++ }
  END {
    for (t in n) printf "mean %-7s %.0f messages/s, p50 %.3f ms, p99 %.3f ms\n", t, rate[t]/n[t], p50[t]/n[t], p99[t]/n[t]
    printf "ftprep/irc: rate %.2fx; ftprep/udp: rate %.3fx\n", rate["ftprep"]/rate["irc"], rate["ftprep"]/rate["udp"]
  }' rounds.txt

echo "offered 1000 messages/s ($pairs pairs, open loop):"
printf '%-7s %s\n' ftprep "$("$load" ftprep "127.0.0.1:$port" "127.0.0.1:$port" --pairs "$pairs" --secs "$secs" --rate 1000)"
printf '%-7s %s\n' irc "$("$load" irc "127.0.0.1:$irc_port" --pairs "$pairs" --secs "$secs" --rate 1000)"

rss() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
before=$(rss "$ftpd_pid")
mkfifo hold
"$load" idle "127.0.0.1:$port" "127.0.0.1:$port" --clients "$idle" --users 100 <hold >idle.out & pids+=($!)
exec 4>hold
for _ in $(seq 1800); do grep -q '^ready' idle.out && break; sleep 0.1; done
after=$(rss "$ftpd_pid")
echo "idle: $(cat idle.out) clients connected; ftpd RSS ${before} KiB -> ${after} KiB: $(( (after - before) / idle )) KiB per idle client"
exec 4>&-
