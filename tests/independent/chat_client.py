"""A chat client written from docs/PROTOCOL.md alone, in another language and on another QUIC
stack (aioquic), so that the document, not the Rust code, is what it follows.

It logs in over QUIC with SCRAM-SHA-256-PLUS, takes the messages that waited for it, asks for
its friends, sends (and resends) a message, waits for a reply, reads the history, and then
breaks the rules the document describes (a frame after the login that is no ChatRequest, an
oversized frame before the login) to check the answers it promises. It prints one JSON object
of what it saw; tests/chat.rs runs it against a real server and checks that object.

Usage: chat_client.py HOST:PORT PIN USER PASSWORD FRIEND
PIN is the server certificate's fingerprint as `ftpd` shows it (SHA256:base64-unpadded).
"""

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import ssl
import struct
import sys

try:
    from aioquic.asyncio import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import ConnectionTerminated, StreamDataReceived
    from cryptography.hazmat.primitives import hashes, serialization
except ImportError as e:  # pragma: no cover - a set-up error, said plainly
    sys.exit(
        f"aioquic is not installed ({e}): scripts/test.sh installs it into target/test-python "
        "(pip install -r tests/independent/requirements.txt)"
    )

ALPN = "ftprep-chat/1"
VERSION = 8
TIMEOUT = 20.0


class ProtocolError(Exception):
    pass


# --- bincode 2, standard configuration, fixed-width little-endian integers ("Payload encoding")


class Writer:
    def __init__(self):
        self.out = bytearray()

    def u8(self, v):
        self.out += struct.pack("<B", v)
        return self

    def u16(self, v):
        self.out += struct.pack("<H", v)
        return self

    def u32(self, v):
        self.out += struct.pack("<I", v)
        return self

    def u64(self, v):
        self.out += struct.pack("<Q", v)
        return self

    def string(self, s):
        data = s.encode("utf-8")
        self.u64(len(data))
        self.out += data
        return self

    def raw(self, b):
        self.out += b
        return self


class Reader:
    def __init__(self, data):
        self.data = data
        self.at = 0

    def take(self, n):
        if self.at + n > len(self.data):
            raise ProtocolError("payload ends early")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def u8(self):
        return self.take(1)[0]

    def boolean(self):
        v = self.u8()
        if v > 1:
            raise ProtocolError(f"bool {v}")
        return v == 1

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def u64(self):
        return struct.unpack("<Q", self.take(8))[0]

    def i64(self):
        return struct.unpack("<q", self.take(8))[0]

    def string(self):
        return self.take(self.u64()).decode("utf-8")

    def option(self, inner):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return inner()
        raise ProtocolError(f"option tag {tag}")

    def vec(self, inner):
        return [inner() for _ in range(self.u64())]

    def end(self):
        if self.at != len(self.data):
            raise ProtocolError("trailing bytes")


# --- messages ("Messages" and "Chat (QUIC)")

ERROR_CODES = [
    "BadFrame", "FrameTooLarge", "VersionMismatch", "UnexpectedRequest", "AuthRequired",
    "AuthFailed", "InvalidPath", "NotFound", "AlreadyExists", "NotADirectory",
    "PermissionDenied", "Timeout", "Busy", "Internal", "QuotaExceeded", "ChecksumMismatch",
    "DirectoryNotEmpty", "IsADirectory", "NoSpace", "Unsupported",
]
CHAT_ERROR_CODES = [
    "Invalid", "NotFriends", "InboxFull", "TooManyRequests", "RateLimited", "Internal",
    "UnexpectedRequest",
]
FRIEND_STATES = ["Friends", "Asked", "AskedBy"]


def hello():
    return Writer().raw(b"FTPR").u16(VERSION).out


def auth_start(mechanism, message):
    return Writer().u32(0).string(mechanism).string(message).out


def auth_finish(message):
    return Writer().u32(1).string(message).out


def read_hello(payload):
    r = Reader(payload)
    magic, version = r.take(4), r.u16()
    r.end()
    if magic != b"FTPR":
        raise ProtocolError(f"hello magic {magic!r}")
    if version != VERSION:
        raise ProtocolError(f"server speaks version {version}, this client {VERSION}")


def read_response(payload):
    r = Reader(payload)
    index = r.u32()
    if index == 0:
        code = r.u32()
        reply = ("Error", ERROR_CODES[code] if code < len(ERROR_CODES) else code, r.string())
    elif index in (1, 2):
        reply = (["AuthChallenge", "AuthOutcome"][index - 1], r.string())
    elif index == 11:
        reply = ("Mechanisms", r.vec(r.string))
    else:
        raise ProtocolError(f"unexpected response {index} during login")
    r.end()
    return reply


def chat_message(r):
    return {"id": r.u64(), "from": r.string(), "to": r.string(), "at": r.i64(), "text": r.string()}


def read_chat_reply(payload):
    r = Reader(payload)
    index = r.u32()
    if index == 0:
        reply = ("Done",)
    elif index == 1:
        def friend():
            return {
                "name": r.string(),
                "state": FRIEND_STATES[r.u32()],
                "online": r.boolean(),
                "color": r.option(r.string),
            }
        reply = ("Friends", r.vec(friend))
    elif index == 2:
        reply = ("Stored", r.u64(), r.i64())
    elif index == 3:
        reply = ("History", r.vec(lambda: chat_message(r)))
    elif index == 4:
        code = r.u32()
        reply = ("Error", CHAT_ERROR_CODES[code], r.string())
    elif index == 5:
        reply = ("Blocked", r.vec(r.string))
    else:
        raise ProtocolError(f"unknown ChatReply {index}")
    r.end()
    return reply


def read_chat_event(payload):
    r = Reader(payload)
    index = r.u32()
    if index == 0:
        event = ("Message", chat_message(r))
    elif index == 1:
        event = ("Presence", r.string(), r.boolean())
    elif index == 2:
        event = ("FriendRequest", r.string())
    elif index == 3:
        name = r.string()
        state = r.option(r.u32)
        event = ("Friendship", name, None if state is None else FRIEND_STATES[state])
    elif index == 4:
        event = ("CaughtUp",)
    elif index == 5:
        event = ("Color", r.string(), r.option(r.string))
    elif index == 6:
        event = ("Sent", chat_message(r))
    else:
        raise ProtocolError(f"unknown ChatEvent {index}")
    r.end()
    return event


def friends_request():
    return Writer().u32(2).out


def send_request(to, text, nonce):
    return Writer().u32(3).string(to).string(text).u64(nonce).out


def ack_request(up_to):
    return Writer().u32(4).u64(up_to).out


def history_request(with_name, limit):
    return Writer().u32(5).string(with_name).u32(limit).out


# --- QUIC: one bidirectional stream of ours, one unidirectional stream of the server's


class ChatProtocol(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.buffers = {}
        self.arrived = asyncio.Condition()
        self.terminated = None

    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived):
            buf = self.buffers.setdefault(event.stream_id, [bytearray(), False])
            buf[0] += event.data
            buf[1] = buf[1] or event.end_stream
        elif isinstance(event, ConnectionTerminated):
            self.terminated = (event.error_code, event.reason_phrase)
        asyncio.ensure_future(self._notify())

    async def _notify(self):
        async with self.arrived:
            self.arrived.notify_all()

    async def frame(self, stream_id):
        """The next frame on a stream, or None once the stream (or connection) has ended."""
        async with self.arrived:
            while True:
                buf, ended = self.buffers.get(stream_id, [bytearray(), False])
                if len(buf) >= 4:
                    length = struct.unpack(">I", buf[:4])[0]
                    if length > 1 << 20:
                        raise ProtocolError(f"frame of {length} bytes")
                    if len(buf) >= 4 + length:
                        payload = bytes(buf[4 : 4 + length])
                        del buf[: 4 + length]
                        return payload
                if ended or self.terminated is not None:
                    return None
                await asyncio.wait_for(self.arrived.wait(), TIMEOUT)

    def server_uni_stream(self):
        # Server-initiated unidirectional streams have ids ending in binary 11.
        for stream_id in self.buffers:
            if stream_id & 0x3 == 0x3:
                return stream_id
        return None

    async def event(self):
        async with self.arrived:
            while self.server_uni_stream() is None:
                await asyncio.wait_for(self.arrived.wait(), TIMEOUT)
        payload = await self.frame(self.server_uni_stream())
        if payload is None:
            raise ProtocolError("the event stream ended")
        return read_chat_event(payload)

    def send(self, stream_id, payload, end=False):
        frame = struct.pack(">I", len(payload)) + payload
        self._quic.send_stream_data(stream_id, frame, end_stream=end)
        self.transmit()

    def send_raw(self, stream_id, data):
        self._quic.send_stream_data(stream_id, data)
        self.transmit()

    def check_pin(self, pin):
        cert = self._quic.tls._peer_certificate  # aioquic keeps it; no public accessor
        der = cert.public_bytes(serialization.Encoding.DER)
        seen = "SHA256:" + base64.b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
        if not hmac.compare_digest(seen, pin):
            raise ProtocolError(f"certificate {seen} is not the pinned {pin}")
        return cert, der

    async def wait_terminated(self):
        async with self.arrived:
            while self.terminated is None:
                await asyncio.wait_for(self.arrived.wait(), TIMEOUT)
        return self.terminated


def end_point_binding(cert, der):
    """RFC 5929 tls-server-end-point: the certificate hashed with its signature's hash,
    SHA-256 in place of MD5 or SHA-1."""
    algorithm = cert.signature_hash_algorithm
    if algorithm is None or isinstance(algorithm, (hashes.MD5, hashes.SHA1)):
        algorithm = hashes.SHA256()
    digest = hashes.Hash(algorithm)
    digest.update(der)
    return digest.finalize()


def attributes(message):
    out = {}
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=":
            raise ProtocolError(f"SCRAM attribute {part!r}")
        out[part[0]] = part[2:]
    return out


async def login(proto, stream, user, password, binding):
    """Hello both ways, then SCRAM-SHA-256-PLUS ("Session", step 2). The client speaks first."""
    proto.send(stream, hello())
    read_hello(await proto.frame(stream))
    mechanisms = read_response(await proto.frame(stream))
    if mechanisms[0] != "Mechanisms" or "SCRAM-SHA-256-PLUS" not in mechanisms[1]:
        raise ProtocolError(f"no SCRAM-SHA-256-PLUS offered: {mechanisms}")

    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
    gs2 = "p=tls-server-end-point,,"
    first_bare = f"n={user},r={nonce}"
    proto.send(stream, auth_start("SCRAM-SHA-256-PLUS", gs2 + first_bare))
    challenge = read_response(await proto.frame(stream))
    if challenge[0] != "AuthChallenge":
        raise ProtocolError(f"expected a challenge: {challenge}")
    server_first = challenge[1]
    attrs = attributes(server_first)
    iterations = int(attrs["i"])
    if not attrs["r"].startswith(nonce) or not 4096 <= iterations <= 10_000_000:
        raise ProtocolError(f"bad server-first {server_first}")

    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(attrs["s"]), iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    channel = base64.b64encode(gs2.encode() + binding).decode()
    final_bare = f"c={channel},r={attrs['r']}"
    auth_message = f"{first_bare},{server_first},{final_bare}".encode()
    signature = hmac.digest(stored_key, auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    proto.send(stream, auth_finish(f"{final_bare},p={base64.b64encode(proof).decode()}"))
    outcome = read_response(await proto.frame(stream))
    if outcome[0] != "AuthOutcome":
        raise ProtocolError(f"expected an outcome: {outcome}")
    expected = "v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256")).decode()
    if not hmac.compare_digest(outcome[1], expected):
        raise ProtocolError(f"login refused or server unproven: {outcome[1]}")


async def ask(proto, stream, request):
    proto.send(stream, request)
    payload = await proto.frame(stream)
    if payload is None:
        raise ProtocolError("the stream ended before the reply")
    return read_chat_reply(payload)


def configuration():
    return QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)


async def chat(host, port, pin, user, password, friend):
    seen = {}
    async with connect(host, port, configuration=configuration(), create_protocol=ChatProtocol) as proto:
        cert, der = proto.check_pin(pin)
        stream = proto._quic.get_next_available_stream_id()
        await login(proto, stream, user, password, end_point_binding(cert, der))

        # What waited for us, then CaughtUp; acknowledged so it is not delivered again.
        waiting = []
        while True:
            event = await proto.event()
            if event[0] == "CaughtUp":
                break
            if event[0] == "Message":
                waiting.append(event[1])
        seen["waiting"] = [(m["from"], m["text"]) for m in waiting]
        if waiting:
            assert (await ask(proto, stream, ack_request(waiting[-1]["id"]))) == ("Done",)

        friends = await ask(proto, stream, friends_request())
        seen["friends"] = friends[1]

        nonce = secrets.randbits(64)
        stored = await ask(proto, stream, send_request(friend, "written from the document", nonce))
        again = await ask(proto, stream, send_request(friend, "written from the document", nonce))
        seen["stored"] = stored[0]
        seen["resend_same_id"] = stored == again

        while True:
            event = await proto.event()
            if event[0] == "Message" and event[1]["from"] == friend:
                seen["reply"] = event[1]["text"]
                assert (await ask(proto, stream, ack_request(event[1]["id"]))) == ("Done",)
                break

        history = await ask(proto, stream, history_request(friend, 5000))
        seen["history"] = [(m["from"], m["text"]) for m in history[1]]

        # A frame that is no ChatRequest: answered UnexpectedRequest, then "bye".
        bad = await ask(proto, stream, Writer().u32(99).out)
        seen["bad_frame"] = bad[1]
        seen["closed"] = list(await proto.wait_terminated())

    # Before the login, a frame over 4,096 bytes: FrameTooLarge, then a close with no reason.
    async with connect(host, port, configuration=configuration(), create_protocol=ChatProtocol) as proto:
        proto.check_pin(pin)
        stream = proto._quic.get_next_available_stream_id()
        proto.send(stream, hello())
        read_hello(await proto.frame(stream))
        read_response(await proto.frame(stream))
        proto.send_raw(stream, struct.pack(">I", 4097))
        refusal = read_response(await proto.frame(stream))
        seen["oversized_before_login"] = refusal[1]
        proto.close(0, "bye")

    return seen


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    address, pin, user, password, friend = sys.argv[1:]
    host, _, port = address.rpartition(":")
    seen = asyncio.run(asyncio.wait_for(chat(host, int(port), pin, user, password, friend), 60))
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
