"""The corners of ftpd's SSH front end, seen from another SSH stack (paramiko): the host
key is the one `ftpd fingerprint` names; `none` and password logins are refused where the
admin has not turned passwords on; a key logs in; shells, commands, port forwarding (both
ways) and agent forwarding are refused; and over SFTP, reads are bounded, links out of the
home, owners and sizes are refused with a status, and many reads in flight come back in
order. It prints one line per check, `ok: ...`, and exits 1 at the first that fails;
tests/cli/sftp.rs runs it against a real server.

Usage: ssh_corners.py HOST PORT USER KEYFILE FINGERPRINT
FINGERPRINT is the host key's as `ftpd fingerprint` shows it (SHA256:base64-unpadded).
"""

import base64
import hashlib
import socket
import sys
import time

try:
    import paramiko
    from paramiko.common import cMSG_CHANNEL_REQUEST
    from paramiko.message import Message
    from paramiko.sftp import CMD_DATA, CMD_READ, int64
except ImportError as e:  # pragma: no cover - a set-up error, said plainly
    sys.exit(f"paramiko is missing ({e}): run scripts/test.sh, which installs it")

MAX_IO = 255 * 1024


def check(condition, what):
    if not condition:
        print(f"FAILED: {what}", flush=True)
        sys.exit(1)
    print(f"ok: {what}", flush=True)


def connect(host, port):
    sock = socket.create_connection((host, port), timeout=10)
    transport = paramiko.Transport(sock)
    transport.banner_timeout = 10
    transport.start_client(timeout=10)
    return transport


def refused(call):
    """The exception `call` raises, or None when it succeeds."""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - any refusal counts, its kind is checked by the caller
        return e
    return None


def main():
    host, port, user, key_file, fingerprint = sys.argv[1:6]
    port = int(port)
    key = paramiko.Ed25519Key.from_private_key_file(key_file)

    transport = connect(host, port)
    host_key = transport.get_remote_server_key()
    seen = "SHA256:" + base64.b64encode(hashlib.sha256(host_key.asbytes()).digest()).decode().rstrip("=")
    check(seen == fingerprint, f"the host key is the one ftpd fingerprint names ({seen})")
    check(host_key.get_name() == "ssh-ed25519", "the host key is Ed25519")

    err = refused(lambda: transport.auth_none(user))
    check(isinstance(err, paramiko.BadAuthenticationType), f"`none` is refused ({err!r})")
    check(err.allowed_types == ["publickey"], f"only publickey is offered ({err.allowed_types})")
    transport.close()
    # A new connection for each attempt: paramiko asks for the authentication service again
    # before each one, which this server's SSH stack (russh) does not answer.
    transport = connect(host, port)
    err = refused(lambda: transport.auth_password(user, "guess"))
    check(isinstance(err, paramiko.BadAuthenticationType), f"a password is refused where passwords are off ({err!r})")
    transport.close()

    transport = connect(host, port)
    transport.auth_publickey(user, key)
    check(transport.is_authenticated(), "the key logs in")

    for what, start in (("a command", lambda c: c.exec_command("id")), ("a shell", lambda c: c.invoke_shell())):
        channel = transport.open_session(timeout=10)
        channel.settimeout(10)
        started = refused(lambda: start(channel))
        said = b""
        if started is None:
            while not channel.exit_status_ready() or channel.recv_stderr_ready():
                chunk = channel.recv_stderr(4096)
                if not chunk:
                    break
                said += chunk
        status = channel.recv_exit_status() if started is None else None
        check(
            started is not None or (status == 1 and b"SFTP only" in said),
            f"{what} is refused with a message (exit {status}, {said!r}, {started!r})",
        )
        channel.close()

    err = refused(lambda: transport.open_channel("direct-tcpip", ("127.0.0.1", 22), ("127.0.0.1", 40000), timeout=10))
    check(isinstance(err, paramiko.ChannelException), f"a forwarded port (-L) is refused ({err!r})")
    err = refused(lambda: transport.request_port_forward("127.0.0.1", 0))
    check(isinstance(err, paramiko.SSHException), f"a remote forward (-R) is refused ({err!r})")

    # Agent forwarding, asked with a reply wanted (paramiko's own call wants none): the
    # server answers with a failure, on which paramiko closes the channel (a success would
    # leave it open).
    channel = transport.open_session(timeout=10)
    m = Message()
    m.add_byte(cMSG_CHANNEL_REQUEST)
    m.add_int(channel.remote_chanid)
    m.add_string("auth-agent-req@openssh.com")
    m.add_boolean(True)
    transport._send_user_message(m)
    deadline = time.monotonic() + 10
    while not channel.closed and time.monotonic() < deadline:
        time.sleep(0.01)
    check(channel.closed, "agent forwarding is refused (the channel failed)")

    sftp = transport.open_sftp_client()
    data = bytes(i * 7 % 251 for i in range(2 * 1024 * 1024))
    with sftp.open("big.bin", "wb") as f:
        f.set_pipelined(True)
        f.write(data)
    with sftp.open("big.bin", "rb") as f:
        t, msg = sftp._request(CMD_READ, f.handle, int64(0), 1024 * 1024)
        got = msg.get_string() if t == CMD_DATA else b""
        check(0 < len(got) <= MAX_IO and got == data[: len(got)], f"one read is bounded ({len(got)} bytes of 1 MiB asked)")
    with sftp.open("big.bin", "rb") as f:
        f.prefetch()
        check(f.read() == data, "2 MiB read with many reads in flight comes back whole")

    err = refused(lambda: sftp.symlink("/etc/passwd", "escape"))
    check(isinstance(err, IOError), f"a link out of the home is refused ({err!r})")
    check(refused(lambda: sftp.stat("escape")) is not None, "and nothing was made")
    err = refused(lambda: sftp.chown("big.bin", 0, 0))
    check(isinstance(err, PermissionError), f"owners are the server's own ({err!r})")
    err = refused(lambda: sftp.truncate("big.bin", 10))
    check(isinstance(err, IOError) and sftp.stat("big.bin").st_size == len(data), f"a size is not set ({err!r})")
    err = refused(lambda: sftp.stat("../../../../etc/passwd"))
    check(isinstance(err, FileNotFoundError), f"`..` stops at the home ({err!r})")
    sftp.posix_rename("big.bin", "moved.bin")
    check(sftp.stat("moved.bin").st_size == len(data), "posix-rename moves it")
    sftp.close()
    transport.close()

    # The server serves the next client.
    transport = connect(host, port)
    transport.auth_publickey(user, key)
    sftp = transport.open_sftp_client()
    check("moved.bin" in sftp.listdir("."), "a new session sees the file")
    transport.close()


if __name__ == "__main__":
    started = time.monotonic()
    main()
    print(f"done in {time.monotonic() - started:.1f}s")
