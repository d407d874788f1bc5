#!/usr/bin/env bash
# ftpd beside the tools people would pick instead, on this machine, in one run:
# vsftpd (FTP, via curl) and OpenSSH's sftp, each on a loopback port with a throw-away user,
# against ftpd in plaintext and TLS. Measures put/get of the same SIZE file (default 1 GiB),
# login rates, and round trips on one connection (mkdir/rmdir, beside vsftpd's MKD/RMD).
# Prints one table of figures and ratios. Transfers run ROUNDS times (default
# 3), each round every tool back to back; the table shows medians, and each ratio is the
# median of the per-round ratios.
#
# Then trees of small files (SMALL_FILES files of 4 KiB in 100 directories, default 10,000;
# 0 skips it), plus a mixed tree (the small files and MIXED_LARGE files of 64 MiB, default
# 3): put -r and get -r with ftpc (TLS), scp -r, sftp -b, rsync over ssh and lftp's mirror
# against vsftpd, and a sync with nothing changed and after 1 % of the files changed (ftpc
# sync beside rsync).
#
# Usage (as root: it installs vsftpd and openssh-server from Debian's packages and creates
# a throw-away system user, removed at the end): scripts/peers.sh [SIZE_MIB] [SECONDS] [ROUNDS]
# Everything else lives in a temporary directory; only 127.0.0.1 is used.
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
seconds=${2:-10}
rounds=${3:-3}
. scripts/rounds.sh
[ "$(id -u)" = 0 ] || { echo "run as root (installs packages, adds a throw-away user)"; exit 1; }
export DEBIAN_FRONTEND=noninteractive
if ! command -v vsftpd >/dev/null || [ ! -x /usr/sbin/sshd ] || ! command -v rsync >/dev/null \
  || ! command -v lftp >/dev/null; then
  apt-get update -qq && apt-get install -y -qq vsftpd openssh-server rsync lftp >/dev/null
fi
small_files=${SMALL_FILES:-10000}
mixed_large=${MIXED_LARGE:-3}
cargo build --release --quiet --bins --examples
bin="$PWD/target/release"
work=$(mktemp -d)
chmod 755 "$work"
user="ftpbench$$"
pids=()
cleanup() {
  restore_page_reporting
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  sleep 0.2
  userdel "$user" 2>/dev/null || true
  rm -rf "$work" "$rounds_file"
}
trap cleanup EXIT
pause_page_reporting
cd "$work"
password="pw-$RANDOM-$RANDOM"
useradd --home-dir "$work/home-$user" --create-home --shell /bin/bash "$user"
echo "$user:$password" | chpasswd
calc() { awk "BEGIN { print $1 }"; }
base=$((30000 + RANDOM % 10000))
ftp_port=$base ssh_port=$((base + 1)) plain_port=$((base + 2)) tls_port=$((base + 3))
ftpd_sftp_port=$((base + 4))

# vsftpd: local users, writable, passive ports on loopback.
mkdir -p vsftpd/empty
cat > vsftpd/vsftpd.conf <<CONF
listen=YES
listen_address=127.0.0.1
listen_port=$ftp_port
anonymous_enable=NO
local_enable=YES
write_enable=YES
pasv_enable=YES
pasv_address=127.0.0.1
pasv_min_port=$((base + 100))
pasv_max_port=$((base + 199))
secure_chroot_dir=$work/vsftpd/empty
seccomp_sandbox=NO
max_clients=2000
max_per_ip=2000
pam_service_name=vsftpd
background=NO
CONF
vsftpd vsftpd/vsftpd.conf 2>vsftpd/log &
pids+=($!)

# sshd: its own host key and config, key login for the throw-away user.
mkdir -p ssh
ssh-keygen -q -t ed25519 -N '' -f ssh/host_key
ssh-keygen -q -t ed25519 -N '' -f ssh/client_key
install -d -m 700 -o "$user" "$work/home-$user/.ssh"
install -m 600 -o "$user" ssh/client_key.pub "$work/home-$user/.ssh/authorized_keys"
cat > ssh/sshd_config <<CONF
ListenAddress 127.0.0.1
Port $ssh_port
HostKey $work/ssh/host_key
PidFile $work/ssh/sshd.pid
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
Subsystem sftp internal-sftp
MaxStartups 1000
CONF
mkdir -p /run/sshd
/usr/sbin/sshd -D -e -f ssh/sshd_config 2>ssh/log &
pids+=($!)
sftp_opts=(-q -i ssh/client_key -P "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes)
ftpd_sftp_opts=(-q -i ssh/client_key -P "$ftpd_sftp_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes)

# ftpd, plaintext and TLS; the TLS one also serves SFTP, to the same key as sshd.
export HOME="$work/ftpc-home" XDG_CONFIG_HOME="$work/ftpc-home/.config"
echo pw | "$bin/ftpd" adduser bench --password-stdin >/dev/null
"$bin/ftpd" addkey bench ssh/client_key.pub >/dev/null
for mode in plain tls; do
  port=$plain_port; flags=(--plaintext --sftp-listen none)
  [ "$mode" = tls ] && { port=$tls_port; flags=(--sftp-listen "127.0.0.1:$ftpd_sftp_port"); }
  mkdir -p "$mode"
  (cd "$mode" && exec "$bin/ftpd" serve --time-listen none --listen "127.0.0.1:$port" --users ../users.db \
     --max-connections 30000 --max-connections-per-ip 30000 --max-sessions-per-user 30000 \
     "${flags[@]}" 2>server.log) &
  pids+=($!)
  [ "$mode" = tls ] && tls_pid=$!
done
for _ in $(seq 200); do
  grep -q listening plain/server.log 2>/dev/null && grep -q listening tls/server.log 2>/dev/null && break
  sleep 0.05
done
for port in "$ssh_port" "$ftp_port" "$ftpd_sftp_port"; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
  (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null || {
    echo "nothing listens on port $port"; cat vsftpd/log ssh/log; exit 1
  }
done

head -c $((size_mib * 1024 * 1024)) /dev/urandom > data.bin
sync
warm_mib=$((size_mib * 3 / 2)) # for `timed` (scripts/rounds.sh)

printf 'put data.bin sftp.bin\n' > put.batch
printf 'get sftp.bin back.bin\n' > get.batch
same() { cmp -s data.bin back.bin || { echo "$1 returned different bytes"; exit 1; }; rm -f back.bin; }
login() { # login plain|tls
  if [ "$1" = plain ]; then
    echo pw | "$bin/ftpc" --server "127.0.0.1:$plain_port" --plaintext login bench --password-stdin 2>/dev/null
  else
    echo pw | "$bin/ftpc" --server "127.0.0.1:$tls_port" --accept-new login bench --password-stdin 2>/dev/null
  fi
}
# Every put writes a new file, as the raw copy does: replacing a 1 GiB file would add the
# kernel's time to free the old one (0.2 s here) to the put that replaces it.
for round in $(seq "$rounds"); do
  rm -f "$work/home-$user/data.bin" "$work/home-$user/sftp.bin" plain/ftp-root/bench/data.bin \
    tls/ftp-root/bench/data.bin tls/ftp-root/bench/sftp.bin
  record raw "$round" "$(timed "$bin/examples/tcp_copy" data.bin raw.bin)"; rm -f raw.bin
  record ftp-put "$round" "$(timed curl -sS -T data.bin "ftp://$user:$password@127.0.0.1:$ftp_port/data.bin")"
  record ftp-get "$round" "$(timed curl -sS -o back.bin "ftp://$user:$password@127.0.0.1:$ftp_port/data.bin")"
  same vsftpd
  record sftp-put "$round" "$(timed sftp "${sftp_opts[@]}" -b put.batch "$user@127.0.0.1")"
  record sftp-get "$round" "$(timed sftp "${sftp_opts[@]}" -b get.batch "$user@127.0.0.1")"
  same sftp
  record ftpd-sftp-put "$round" "$(timed sftp "${ftpd_sftp_opts[@]}" -b put.batch bench@127.0.0.1)"
  record ftpd-sftp-get "$round" "$(timed sftp "${ftpd_sftp_opts[@]}" -b get.batch bench@127.0.0.1)"
  same "ftpd's sftp"
  for mode in plain tls; do
    login "$mode"
    record "put-$mode" "$round" "$(timed "$bin/ftpc" put data.bin)"
    record "get-$mode" "$round" "$(timed "$bin/ftpc" get -f data.bin back.bin)"
    same ftpc
  done
done

# Login rates over SECONDS with 64 concurrent clients: vsftpd (USER/PASS, then QUIT, via
# Python's ftplib), ftpd (the load generator's logins, cached keys, TLS and plaintext).
cat > ftp_logins.py <<'PY'
import ftplib, sys, threading, time
host, port, user, password, seconds, clients = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6])
count = [0] * clients
errors = [0] * clients
deadline = time.time() + seconds
def run(i):
    while time.time() < deadline:
        try:
            ftp = ftplib.FTP()
            ftp.connect(host, port, timeout=10)
            ftp.login(user, password)
            ftp.quit()
            count[i] += 1
        except Exception:
            errors[i] += 1
threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
started = time.time()
for t in threads: t.start()
for t in threads: t.join()
print(f"{sum(count) / (time.time() - started):.1f} {sum(errors)}")
PY
read -r ftp_logins ftp_errors < <(python3 ftp_logins.py 127.0.0.1 "$ftp_port" "$user" "$password" "$seconds" 64)
bench_rate() { "$bin/ftpc" --server "$1" bench --clients 64 -d "$seconds" 2>/dev/null | awk '/^logins/ {print $3}' | tr -d '/s'; }
echo pw | "$bin/ftpc" --server "127.0.0.1:$plain_port" --plaintext login bench --password-stdin 2>/dev/null
plain_logins=$(bench_rate "127.0.0.1:$plain_port")
echo pw | "$bin/ftpc" --server "127.0.0.1:$tls_port" login bench --password-stdin 2>/dev/null
tls_logins=$(bench_rate "127.0.0.1:$tls_port")

# SFTP key logins over SECONDS, 16 clients at once, each an OpenSSH `sftp -b /dev/null` (key
# exchange, key login, the SFTP subsystem started, then closed): sshd beside ftpd. The
# clients are the same for both, so the ratio understates the servers' difference.
sftp_logins() { # sftp_logins PORT USER: logins/s
  local port=$1 who=$2
  for _ in $(seq 16); do
    (end=$((SECONDS + seconds)) n=0
     while [ "$SECONDS" -lt "$end" ]; do
       sftp -q -i ssh/client_key -P "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
         -o BatchMode=yes -b /dev/null "$who@127.0.0.1" >/dev/null 2>&1 && n=$((n + 1))
     done
     echo "$n") &
  done | awk -v s="$seconds" '{ n += $1 } END { printf "%.1f", n / s }'
}
sshd_sftp_logins=$(sftp_logins "$ssh_port" "$user")
ftpd_sftp_logins=$(sftp_logins "$ftpd_sftp_port" bench)

# Memory of idle SFTP sessions: 100 clients logged in with the subsystem running and nothing
# to do; the servers' resident memory (ftpd's one process; every sshd process) before and
# after, per session.
rss_kib() { ps -o rss= -p "$1" | awk '{ n += $1 } END { print n + 0 }'; }
sshd_rss() { ps -C sshd,sshd-session,sshd-auth -o rss= | awk '{ n += $1 } END { print n + 0 }'; }
established() { ss -Htn state established "( sport = :$1 )" | wc -l; }
idle_sessions() { # idle_sessions PORT USER: starts 100 idle sessions; their pids in idle_pids
  idle_pids=()
  for _ in $(seq 100); do
    sleep 3600 | ssh -q -i ssh/client_key -p "$1" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
      -o BatchMode=yes -s "$2@127.0.0.1" sftp >/dev/null 2>&1 &
    idle_pids+=($!)
  done
  for _ in $(seq 600); do [ "$(established "$1")" -ge 100 ] && break; sleep 0.1; done
  sleep 2 # the last logins finish after their connections are up
}
end_idle() { for pid in "${idle_pids[@]}"; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done; pkill -f "sleep 3600" || true; sleep 1; }
before=$(rss_kib "$tls_pid"); idle_sessions "$ftpd_sftp_port" bench
ftpd_idle_kib=$(calc "($(rss_kib "$tls_pid") - $before) / 100"); end_idle
before=$(sshd_rss); idle_sessions "$ssh_port" "$user"
sshd_idle_kib=$(calc "($(sshd_rss) - $before) / 100"); end_idle

# Round trips on one connection, no pipelining: 2,000 mkdir + rmdir pairs, vsftpd through
# Python's ftplib (MKD/RMD), ftpd through `ftpc shell -b` in plaintext and TLS; ROUNDS
# interleaved rounds.
cat > ftp_trips.py <<'PY'
import ftplib, sys, time
host, port, user, password, pairs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
ftp = ftplib.FTP()
ftp.connect(host, port, timeout=10)
ftp.login(user, password)
started = time.time()
for i in range(pairs):
    ftp.mkd("rt%d" % i)
    ftp.rmd("rt%d" % i)
print(f"{2 * pairs / (time.time() - started):.1f}")
ftp.quit()
PY
# The floor under any of them: a bare request and reply (40 bytes each way) between two
# processes over loopback TCP, with nothing done in between. On a VM whose idle vCPUs halt
# (as here: haltpoll with guest_halt_poll_ns=0), waking the peer's vCPU is most of a round
# trip, whatever the server does.
cat > tcp_pingpong.py <<'PY'
import os, socket, sys, time
trips = int(sys.argv[1])
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(1)
if os.fork() == 0:
    peer, _ = listener.accept()
    peer.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while (data := peer.recv(64)):
        peer.sendall(data)
    os._exit(0)
conn = socket.create_connection(listener.getsockname())
conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
started = time.time()
for _ in range(trips):
    conn.sendall(b"x" * 40)
    conn.recv(64)
print(f"{trips / (time.time() - started):.1f}")
conn.close()
os.wait()
PY
for i in $(seq 1 2000); do echo "mkdir rt$i"; echo "rmdir rt$i"; done > trips.batch
trips() { # trips plain|tls: ops/s of ftpc shell -b over trips.batch
  local port=$plain_port flag=--plaintext
  [ "$1" = tls ] && { port=$tls_port; flag=; }
  echo pw | "$bin/ftpc" --server "127.0.0.1:$port" $flag login bench --password-stdin >/dev/null 2>&1
  local t0; t0=$(date +%s.%N)
  "$bin/ftpc" shell -b trips.batch >/dev/null
  awk -v from="$t0" -v to="$(date +%s.%N)" 'BEGIN { print 4000 / (to - from) }'
}
for round in $(seq "$rounds"); do
  record trips-floor "$round" "$(python3 tcp_pingpong.py 4000)"
  record trips-vsftpd "$round" "$(python3 ftp_trips.py 127.0.0.1 "$ftp_port" "$user" "$password" 2000)"
  record trips-plain "$round" "$(trips plain)"
  record trips-tls "$round" "$(trips tls)"
done

# Trees of small files, and the same tree with a few large files: every tool in each round.
if [ "$small_files" -gt 0 ]; then
  python3 - "$small_files" <<'PY'
import os, sys
for i in range(int(sys.argv[1])):
    d = "small/d%02d" % (i % 100)
    os.makedirs(d, exist_ok=True)
    with open("%s/f%06d" % (d, i), "wb") as f:
        f.write(os.urandom(4096))
PY
  cp -r small mixed
  for i in $(seq "$mixed_large"); do head -c $((64 << 20)) /dev/urandom > "mixed/large$i"; done
  chmod -R a+rX small mixed
  uhome="$work/home-$user"
  ssh_cmd="ssh -q -i $work/ssh/client_key -p $ssh_port -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes"
  scp_opts=(-q -r -i ssh/client_key -P "$ssh_port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes)
  lftp_run() { lftp -u "$user,$password" -p "$ftp_port" -e "set ftp:ssl-allow no; $1; quit" 127.0.0.1; }
  same_tree() { diff -rq "$1" "$2" >/dev/null || { echo "$3 returned a different tree"; exit 1; }; rm -rf "$2"; }
  touch_some() { # changes 1 % of the files in a tree (new contents, same size)
    python3 - "$1" <<'PY'
import os, sys
names = sorted(os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs if f.startswith("f"))
for name in names[::100]:
    with open(name, "r+b") as f:
        f.write(os.urandom(4096))
PY
  }
  # The floor under any tool that keeps ftpd's promise (`Ok` means on disk): the same files
  # written straight to this disk by 8 threads, each to a temporary name, synced and renamed
  # (no network, no protocol; directories not even synced). And the same without the
  # syncs, which is what rsync, scp, sftp and vsftpd do.
  cat > write_tree.py <<'PY'
import os, sys, threading
root, files, sync = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "sync"
data = os.urandom(4096)
for d in range(100):
    os.makedirs("%s/d%02d" % (root, d), exist_ok=True)
def write(first):
    for i in range(first, files, 8):
        name = "%s/d%02d/f%06d" % (root, i % 100, i)
        fd = os.open(name + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        if sync:
            os.fsync(fd)
        os.close(fd)
        os.rename(name + ".tmp", name)
threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
PY
  login tls
  warm_mib=256
  for tree in small mixed; do
    for round in $(seq "$rounds"); do
      rm -rf "$uhome"/t-* tls/ftp-root/bench/t-* back-* floor-*
      if [ "$tree" = small ]; then
        record floor-synced "$round" "$(timed python3 write_tree.py floor-synced "$small_files" sync)"
        record floor-unsynced "$round" "$(timed python3 write_tree.py floor-unsynced "$small_files" no)"
      fi
      record "$tree-ftpc-put" "$round" "$(timed "$bin/ftpc" put -r "$tree/" "t-$tree")"
      record "$tree-ftpc-get" "$round" "$(timed "$bin/ftpc" get -r "t-$tree/" back-ftpc)"
      same_tree "$tree" back-ftpc ftpc
      record "$tree-scp-put" "$round" "$(timed scp "${scp_opts[@]}" "$tree" "$user@127.0.0.1:t-$tree-scp")"
      record "$tree-scp-get" "$round" "$(timed scp "${scp_opts[@]}" "$user@127.0.0.1:t-$tree-scp" back-scp)"
      same_tree "$tree" back-scp scp
      printf 'put -r %s t-%s-sftp\n' "$tree" "$tree" > tree-put.batch
      printf 'get -r t-%s-sftp back-sftp\n' "$tree" > tree-get.batch
      record "$tree-sftp-put" "$round" "$(timed sftp "${sftp_opts[@]}" -b tree-put.batch "$user@127.0.0.1")"
      record "$tree-sftp-get" "$round" "$(timed sftp "${sftp_opts[@]}" -b tree-get.batch "$user@127.0.0.1")"
      same_tree "$tree" back-sftp sftp
      record "$tree-ftpdsftp-put" "$round" "$(timed sftp "${ftpd_sftp_opts[@]}" -b tree-put.batch bench@127.0.0.1)"
      record "$tree-ftpdsftp-get" "$round" "$(timed sftp "${ftpd_sftp_opts[@]}" -b tree-get.batch bench@127.0.0.1)"
      same_tree "$tree" back-sftp "ftpd's sftp"
      # Each file synced before the next (sftp -f: fsync@openssh.com), to both servers.
      printf 'put -r %s t-%s-sftpf\n' "$tree" "$tree" > tree-putf.batch
      record "$tree-sftpf-put" "$round" "$(timed sftp "${sftp_opts[@]}" -f -b tree-putf.batch "$user@127.0.0.1")"
      record "$tree-ftpdsftpf-put" "$round" "$(timed sftp "${ftpd_sftp_opts[@]}" -f -b tree-putf.batch bench@127.0.0.1)"
      record "$tree-rsync-put" "$round" "$(timed rsync -a -e "$ssh_cmd" "$tree/" "$user@127.0.0.1:t-$tree-rsync/")"
      record "$tree-rsync-get" "$round" "$(timed rsync -a -e "$ssh_cmd" "$user@127.0.0.1:t-$tree-rsync/" back-rsync/)"
      same_tree "$tree" back-rsync rsync
      record "$tree-lftp-put" "$round" "$(timed lftp_run "mirror -R $tree t-$tree-lftp")"
      record "$tree-lftp-get" "$round" "$(timed lftp_run "mirror t-$tree-lftp back-lftp")"
      same_tree "$tree" back-lftp lftp
      # Syncs: nothing changed, then 1 % of the files changed.
      "$bin/ftpc" sync "$tree/" ":t-$tree-sync" >/dev/null
      record "$tree-ftpc-sync0" "$round" "$(timed "$bin/ftpc" sync "$tree/" ":t-$tree-sync")"
      record "$tree-rsync-sync0" "$round" "$(timed rsync -a -e "$ssh_cmd" "$tree/" "$user@127.0.0.1:t-$tree-rsync/")"
      touch_some "$tree"
      record "$tree-ftpc-sync1" "$round" "$(timed "$bin/ftpc" sync "$tree/" ":t-$tree-sync")"
      record "$tree-rsync-sync1" "$round" "$(timed rsync -a -e "$ssh_cmd" "$tree/" "$user@127.0.0.1:t-$tree-rsync/")"
    done
  done
fi

mib() { calc "$size_mib / $1"; }
printf '\n%s\n' "$(page_reporting_state)"
printf '\n%d rounds: medians (each ratio is the median of per-round ratios)\n' "$rounds"
printf '%-28s %9s %10s %9s\n' "transfer of ${size_mib} MiB" "seconds" "MiB/s" "vs raw"
row() { # row LABEL NAME
  local t; t=$(median "$2")
  printf '%-28s %9.2f %10.1f %8.0f%%\n' "$1" "$t" "$(mib "$t")" "$(calc "100 * $(vs raw "$2")")"
}
row "raw TCP copy" raw
row "vsftpd put (curl)" ftp-put; row "vsftpd get (curl)" ftp-get
row "sftp put" sftp-put; row "sftp get" sftp-get
row "sftp put to ftpd" ftpd-sftp-put; row "sftp get from ftpd" ftpd-sftp-get
row "ftpc put, plaintext" put-plain; row "ftpc get, plaintext" get-plain
row "ftpc put, TLS" put-tls; row "ftpc get, TLS" get-tls
printf '\nTLS vs sftp (median of per-round ratios): put %.2fx, get %.2fx\n' \
  "$(vs sftp-put put-tls)" "$(vs sftp-get get-tls)"
printf "ftpd's SFTP vs OpenSSH's internal-sftp, both with OpenSSH's sftp: put %.2fx, get %.2fx\n" \
  "$(vs sftp-put ftpd-sftp-put)" "$(vs sftp-get ftpd-sftp-get)"
printf '\n%-36s %12s\n' "logins/s, 64 clients, ${seconds} s" "rate"
printf '%-36s %12.1f  (%s errors)\n' "vsftpd (ftplib USER/PASS/QUIT)" "$ftp_logins" "$ftp_errors"
printf '%-36s %12.1f  (%.1fx vsftpd)\n' "ftpd plaintext (ftpc bench)" "$plain_logins" "$(calc "$plain_logins / $ftp_logins")"
printf '%-36s %12.1f  (%.1fx vsftpd)\n' "ftpd TLS (ftpc bench)" "$tls_logins" "$(calc "$tls_logins / $ftp_logins")"
printf '\n%-36s %12s\n' "SFTP key logins/s, 16 sftp clients" "rate"
printf '%-36s %12.1f\n' "OpenSSH sshd, internal-sftp" "$sshd_sftp_logins"
printf '%-36s %12.1f  (%.2fx sshd)\n' "ftpd" "$ftpd_sftp_logins" "$(calc "$ftpd_sftp_logins / $sshd_sftp_logins")"
printf '\n%-36s %12s\n' "memory per idle SFTP session" "KiB"
printf '%-36s %12.0f  (every sshd process)\n' "OpenSSH sshd, internal-sftp" "$sshd_idle_kib"
printf '%-36s %12.0f  (ftpd resident, before and after 100)\n' "ftpd" "$ftpd_idle_kib"
printf '\n%-36s %12s\n' "round trips on one connection" "ops/s"
printf '%-36s %12.0f\n' "TCP request/reply, nothing done" "$(median trips-floor)"
printf '%-36s %12.0f\n' "vsftpd (ftplib MKD/RMD)" "$(median trips-vsftpd)"
printf '%-36s %12.0f  (%.2fx vsftpd)\n' "ftpd plaintext (ftpc shell -b)" "$(median trips-plain)" "$(vs trips-plain trips-vsftpd)"
printf '%-36s %12.0f  (%.2fx vsftpd)\n' "ftpd TLS (ftpc shell -b)" "$(median trips-tls)" "$(vs trips-tls trips-vsftpd)"
printf 'each against the bare request/reply: vsftpd %.2fx, ftpd plaintext %.2fx, TLS %.2fx\n' \
  "$(vs trips-vsftpd trips-floor)" "$(vs trips-plain trips-floor)" "$(vs trips-tls trips-floor)"
if [ "$small_files" -gt 0 ]; then
  for tree in small mixed; do
    if [ "$tree" = small ]; then
      printf '\n%s files of 4 KiB in 100 directories, seconds (median)\n' "$small_files"
    else
      printf '\nthe same plus %s files of 64 MiB, seconds (median)\n' "$mixed_large"
    fi
    printf '%-22s %9s %9s\n' "" "put -r" "get -r"
    for tool in ftpc scp sftp ftpdsftp rsync lftp; do
      printf '%-22s %9.2f %9.2f\n' "$tool" "$(median "$tree-$tool-put")" "$(median "$tree-$tool-get")"
    done
    printf "sftp -b to ftpd vs to sshd (median of per-round ratios): put -r %.2fx, get -r %.2fx\n" \
      "$(vs "$tree-sftp-put" "$tree-ftpdsftp-put")" "$(vs "$tree-sftp-get" "$tree-ftpdsftp-get")"
    printf "sftp -f (each file synced) put -r: sshd %.2f s, ftpd %.2f s (%.2fx)\n" \
      "$(median "$tree-sftpf-put")" "$(median "$tree-ftpdsftpf-put")" "$(vs "$tree-sftpf-put" "$tree-ftpdsftpf-put")"
    faster() { awk -v a="$(median "$1")" -v b="$(median "$2")" 'BEGIN { exit !(a < b) }'; }
    best_put=scp best_get=scp
    for tool in sftp rsync lftp; do
      faster "$tree-$tool-put" "$tree-$best_put-put" && best_put=$tool
      faster "$tree-$tool-get" "$tree-$best_get-get" && best_get=$tool
    done
    printf 'ftpc vs the fastest peer (median of per-round ratios): put -r %.2fx (%s), get -r %.2fx (%s)\n' \
      "$(vs "$tree-$best_put-put" "$tree-ftpc-put")" "$best_put" "$(vs "$tree-$best_get-get" "$tree-ftpc-get")" "$best_get"
    if [ "$tree" = small ]; then
      printf '%-22s %9.2f  (writing the files to this disk, no network; synced each, 8 threads)\n' \
        "floor, synced" "$(median floor-synced)"
      printf '%-22s %9.2f  (the same, not synced)\n' "floor, not synced" "$(median floor-unsynced)"
    fi
    printf '%-22s %9s %9s\n' "sync" "nothing" "1 %"
    printf '%-22s %9.3f %9.3f\n' "ftpc sync" "$(median "$tree-ftpc-sync0")" "$(median "$tree-ftpc-sync1")"
    printf '%-22s %9.3f %9.3f\n' "rsync -a" "$(median "$tree-rsync-sync0")" "$(median "$tree-rsync-sync1")"
    printf 'ftpc sync vs rsync: nothing changed %.2fx, 1 %% changed %.2fx\n' \
      "$(vs "$tree-rsync-sync0" "$tree-ftpc-sync0")" "$(vs "$tree-rsync-sync1" "$tree-ftpc-sync1")"
  done
fi
