#!/usr/bin/env bash
# Every test, against the real engines and clients: installs what is missing (chrony,
# PostgreSQL, OpenSSH's client, rclone and sshfs from Debian's packages, s3s-fs pinned from
# crates.io, aioquic and paramiko pinned from PyPI into a virtual environment), then
# `cargo test --locked`. Without root
# it installs nothing: it names what to install and fails, rather than let a test skip.
set -euo pipefail
cd "$(dirname "$0")/.."

S3S_FS_VERSION=0.14.1 # the newest release that builds on Rust 1.95 (0.15 wants 1.96)
s3s_root="${CARGO_HOME:-$HOME/.cargo}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not installed: this project needs the stable Rust toolchain (rustup.rs)" >&2
  exit 1
fi

have_chrony() { command -v chronyd >/dev/null 2>&1 || [ -x /usr/sbin/chronyd ]; }
have_postgres() { ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; }
have_s3s() { command -v s3s-fs >/dev/null 2>&1 || [ -x "$s3s_root/bin/s3s-fs" ]; }
have_kill() { command -v kill >/dev/null 2>&1; }
have_venv() { python3 -c 'import venv, ensurepip' >/dev/null 2>&1; }
have_openssh() { command -v sftp >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1; }
have_rclone() { command -v rclone >/dev/null 2>&1; }
have_sshfs() { command -v sshfs >/dev/null 2>&1 && command -v fusermount3 >/dev/null 2>&1; }

packages=()
have_kill || packages+=(procps)
have_chrony || packages+=(chrony)
have_postgres || packages+=(postgresql)
have_venv || packages+=(python3 python3-venv)
have_openssh || packages+=(openssh-client)
have_rclone || packages+=(rclone)
have_sshfs || packages+=(sshfs)

if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/test.sh: missing ${packages[*]}; install as root and run again:" >&2
    echo "  apt-get install --no-install-recommends ${packages[*]}" >&2
    echo "(the tests start their own chronyd and PostgreSQL on loopback; the packages' own" >&2
    echo " services are not needed)" >&2
    exit 1
  fi
  # The packages' own services are not wanted: the tests run their own throw-away chronyd
  # (which never steers the clock) and PostgreSQL cluster. policy-rc.d refuses every service
  # start while the packages install, and PostgreSQL creates no cluster.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  mkdir -p /etc/postgresql-common/createcluster.d
  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/ftprep-tests.conf
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
  # Should a service have started all the same, stop it.
  pkill -x chronyd 2>/dev/null || true
fi

# s3s-fs, an S3 server made for integration tests: the tests start their own on a loopback
# port, storing into a temporary directory.
if ! have_s3s; then
  echo "scripts/test.sh: installing s3s-fs $S3S_FS_VERSION (cargo install)" >&2
  cargo install --locked --quiet --root "$s3s_root" "s3s-fs@$S3S_FS_VERSION" --features binary
fi
if [ -z "${S3S_FS:-}" ] && [ -x "$s3s_root/bin/s3s-fs" ]; then
  export S3S_FS="$s3s_root/bin/s3s-fs"
fi

# The chat client written from docs/PROTOCOL.md alone (tests/independent) runs on Python's
# aioquic, and the SSH corner tests on paramiko, pinned, in a virtual environment of their
# own.
venv=target/test-python
if ! "$venv/bin/python" -c 'import aioquic, paramiko' >/dev/null 2>&1; then
  echo "scripts/test.sh: installing aioquic and paramiko into $venv (pip)" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r tests/independent/requirements.txt
fi
export FTPREP_TEST_PYTHON="$PWD/$venv/bin/python"

cargo test --locked "$@"
