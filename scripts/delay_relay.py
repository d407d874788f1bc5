#!/usr/bin/env python3
"""A TCP relay that holds every chunk for DELAY_MS before passing it on, in each direction
and in order: a network with a round-trip time of 2 x DELAY_MS, on loopback, without root
or the kernel's netem (not available on every machine).

Usage: delay_relay.py LISTEN_PORT TARGET_PORT DELAY_MS. Prints "relaying" once it listens.
"""
import asyncio
import sys
import time

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])
delay = float(sys.argv[3]) / 1000


async def pump(reader, writer):
    """Copies reader to writer, each chunk DELAY after it arrived; EOF passes on too."""
    queue = asyncio.Queue()

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    while True:
        data = await reader.read(65536)
        await queue.put((time.monotonic() + delay, data))
        if not data:
            break
    await sender


async def relay(client_reader, client_writer):
    server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    await asyncio.gather(
        pump(client_reader, server_writer),
        pump(server_reader, client_writer),
        return_exceptions=True,
    )


async def main():
    server = await asyncio.start_server(relay, "127.0.0.1", listen_port)
    print("relaying", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
