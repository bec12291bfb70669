#!/usr/bin/env python3
"""A TCP proxy on 127.0.0.1 that passes answers on at most RATE bytes a second (shared by every
connection), to measure an export from a slow server (benches/e2e.sh SLOW=MB/s).

  slow_proxy.py TARGET_PORT RATE_BYTES_PER_S

Prints "listening on PORT" once ready, then runs until killed. Requests go through unthrottled.
"""

import asyncio
import sys
import time


class Bucket:
    """A token bucket of `rate` bytes a second, shared by all connections."""

    def __init__(self, rate: float):
        self.rate = rate
        self.allowance = 0.0
        self.last = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n: int) -> None:
        async with self.lock:
            now = time.monotonic()
            self.allowance = min(self.allowance + (now - self.last) * self.rate, self.rate / 10)
            self.last = now
            self.allowance -= n
            if self.allowance < 0:
                await asyncio.sleep(-self.allowance / self.rate)


async def pipe(reader, writer, bucket=None):
    try:
        while True:
            data = await reader.read(16384)
            if not data:
                break
            if bucket is not None:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


async def main() -> None:
    target, rate = int(sys.argv[1]), float(sys.argv[2])
    bucket = Bucket(rate)

    async def handle(client_reader, client_writer):
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, server_writer),
            pipe(server_reader, client_writer, bucket),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"listening on {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
