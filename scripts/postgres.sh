# Sourced by users_bench.sh and cluster.sh: a throw-away PostgreSQL cluster from Debian's
# packages (initdb + pg_ctl) in a temporary directory, on a loopback port, no system
# service. As root it runs as the `postgres` user, which refuses root.
#
# find_postgres (sets pg_bin, or says what to install and exits); start_postgres WORK
# (the cluster in WORK/pg; sets pg_port and pg_url; WORK is given to the postgres user when
# root); stop_postgres WORK (for the caller's cleanup).

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

as_pg=()
find_postgres() {
  pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -x "$pg_bin/initdb" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)"; exit 1; }
}

start_postgres() {
  local work=$1
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$work"
    as_pg=(runuser -u postgres --)
  fi
  pg_port=$(free_port)
  "${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U ftpd --auth=trust -E UTF8 >/dev/null
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -w -l "$work/pg/log" \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $work" start >/dev/null
  pg_url="postgres://ftpd@127.0.0.1:$pg_port/postgres"
}

stop_postgres() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$1/pg" -m immediate stop >/dev/null 2>&1 || true
}
