"""A lean asyncio Redis client for the gateway's hot path (``gateway.limits.hot_call``).

redis-py's asyncio client costs about 0.15 ms of CPU per command here (pool checkout, retry and
observability wrappers, a StreamReader parse, one ``send`` per command), most of a cache-miss
request's Redis cost: README, "Performance". This client does only what the hot path needs:

* **one connection per event loop, pipelined**: each command is queued with a future; commands
  issued in the same loop iteration go out in one ``write`` and replies are matched in order (Redis
  answers a connection's commands in order). Concurrent requests share one socket and one system
  call, and a command whose caller gave up (``asyncio.timeout``) leaves the connection usable: its
  reply is read and dropped;
* **replies parsed by hiredis** (C), as redis-py does when hiredis is installed;
* the errors redis-py raises (``ConnectionError``, ``ResponseError``, ``NoScriptError``), so
  callers and their failure policies do not change.

It is not a general client: no retries (the callers' policies decide), no pub/sub, no
transactions, no cluster. ``redis://``, ``rediss://`` and ``unix://`` URLs, with user, password
and db as redis-py reads them.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

# A connection whose commands have waited this long without any reply is presumed dead (a peer
# that vanished without a reset): it is dropped and the next command connects again.
STALLED_AFTER = 10.0


def encode_command(args: tuple[Any, ...] | list[Any]) -> bytes:
    """RESP array of bulk strings (str as UTF-8, int and float as their decimal text)."""
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for arg in args:
        kind = type(arg)
        if kind is str:
            data = arg.encode()
        elif kind is bytes:
            data = arg
        elif kind is int:
            data = b"%d" % arg
        elif kind is float:
            data = repr(arg).encode()
        else:
            data = _encode_other(arg)
        append(b"$%d\r\n" % len(data))
        append(data)
        append(b"\r\n")
    return b"".join(out)


def _encode_other(arg: Any) -> bytes:
    """Subclasses (an IntEnum, a str subclass); never a bool or None."""
    if isinstance(arg, bool):
        raise TypeError("a bool is not a Redis argument; pass 0/1 or a string")
    if isinstance(arg, int):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(float(arg)).encode()
    if isinstance(arg, str):
        return str(arg).encode()
    if isinstance(arg, bytes):
        return bytes(arg)
    raise TypeError(f"cannot send {type(arg).__name__} to Redis")


def _error(reply: hiredis.ReplyError) -> ResponseError:
    message = str(reply)
    if message.startswith("NOSCRIPT"):
        return NoScriptError(message)
    return ResponseError(message)


class _Connection(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.reader = hiredis.Reader()
        self.waiting: collections.deque[asyncio.Future] = collections.deque()
        self.outgoing: list[bytes] = []
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.flush_scheduled = False
        self.progress = 0.0  # when a reply last arrived, or the first command began waiting

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.progress = time.monotonic()
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError as exc:
                self.abort(f"protocol error: {exc}")
                return
            if reply is False:
                return
            if not self.waiting:
                self.abort("a reply nobody asked for")
                return
            future = self.waiting.popleft()
            if future.done():  # its caller gave up (timeout, cancellation): drop the reply
                continue
            if isinstance(reply, hiredis.ReplyError):
                future.set_exception(_error(reply))
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        error = RedisConnectionError(f"connection to Redis lost ({exc or 'closed'})")
        while self.waiting:
            future = self.waiting.popleft()
            if not future.done():
                future.set_exception(error)
        self.outgoing.clear()

    # ours
    def send(self, payload: bytes) -> asyncio.Future:
        if self.closed:
            raise RedisConnectionError("connection to Redis closed")
        future = self.loop.create_future()
        if not self.waiting:
            self.progress = time.monotonic()
        self.waiting.append(future)
        self.outgoing.append(payload)
        if not self.flush_scheduled:
            # Commands of this loop iteration leave together: one write, one system call.
            self.flush_scheduled = True
            self.loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self.flush_scheduled = False
        if self.closed or not self.outgoing:
            return
        data = self.outgoing[0] if len(self.outgoing) == 1 else b"".join(self.outgoing)
        self.outgoing.clear()
        self.transport.write(data)

    def stalled(self) -> bool:
        return bool(self.waiting) and time.monotonic() - self.progress > STALLED_AFTER

    def abort(self, reason: str) -> None:
        if self.transport is not None:
            self.transport.abort()  # connection_lost fails what is waiting
        if not self.closed:
            self.connection_lost(RedisConnectionError(reason))


class HotRedis:
    """The hot path's client for one event loop (see the module docstring)."""

    def __init__(self, url: str, *, connect_timeout: float) -> None:
        self.url = url
        self.connect_timeout = connect_timeout
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.unix_path = parts.path if parts.scheme == "unix" else None
        self.host = parts.hostname or "localhost"
        self.port = parts.port or 6379
        self.ssl = ssl.create_default_context() if parts.scheme == "rediss" else None
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        if self.unix_path is not None:
            db = (query.get("db") or ["0"])[0]
        else:
            db = (query.get("db") or [parts.path.lstrip("/") or "0"])[0]
        self.db = int(db or 0)
        self._conn: _Connection | None = None
        self._connecting: asyncio.Task | None = None

    async def _connection(self) -> _Connection:
        conn = self._conn
        if conn is not None and not conn.closed:
            if not conn.stalled():
                return conn
            conn.abort(f"no reply for {STALLED_AFTER:.0f}s")
        if self._connecting is None:
            # One connect for everyone waiting, bounded by its own timeout: a caller that gives up
            # (its hot-path deadline) does not cancel it for the others.
            self._connecting = asyncio.get_running_loop().create_task(self._open())
            self._connecting.add_done_callback(self._connected)
        return await asyncio.shield(self._connecting)

    def _connected(self, task: asyncio.Task) -> None:
        self._connecting = None
        if not task.cancelled() and task.exception() is None:
            self._conn = task.result()

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                if self.unix_path is not None:
                    _, conn = await loop.create_unix_connection(lambda: _Connection(loop), self.unix_path)
                else:
                    _, conn = await loop.create_connection(
                        lambda: _Connection(loop), self.host, self.port, ssl=self.ssl
                    )
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"cannot connect to Redis: {str(exc) or type(exc).__name__}") from exc
        hello = []
        if self.password is not None:
            auth = (b"AUTH", self.username, self.password) if self.username else (b"AUTH", self.password)
            hello.append(conn.send(encode_command(auth)))
        if self.db:
            hello.append(conn.send(encode_command((b"SELECT", self.db))))
        try:
            for answer in hello:
                await answer
        except BaseException:
            conn.abort("set-up failed")
            raise
        return conn

    async def execute(self, *args: Any) -> Any:
        conn = await self._connection()
        return await conn.send(encode_command(args))

    def disconnect(self) -> None:
        """Drop the connection (the next command opens a new one); what waits on it fails."""
        if self._conn is not None:
            self._conn.abort("disconnected")
            self._conn = None

    # The few commands the hot path uses, with redis-py's signatures and replies.
    async def get(self, name: str) -> bytes | None:
        return await self.execute(b"GET", name)

    async def set(
        self, name: str, value: Any, *, ex: int | None = None, px: int | None = None, nx: bool = False
    ) -> bool | None:
        args: list[Any] = [b"SET", name, value]
        if ex is not None:
            args += [b"EX", int(ex)]
        if px is not None:
            args += [b"PX", int(px)]
        if nx:
            args.append(b"NX")
        return True if await self.execute(*args) == b"OK" else None

    async def exists(self, *names: str) -> int:
        return await self.execute(b"EXISTS", *names)

    async def xadd(self, name: str, fields: dict[str, Any]) -> bytes:
        args: list[Any] = [b"XADD", name, b"*"]
        for field, value in fields.items():
            args += [field, value]
        return await self.execute(*args)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute(b"EVALSHA", sha, numkeys, *keys_and_args)

    async def eval(self, script: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute(b"EVAL", script, numkeys, *keys_and_args)
