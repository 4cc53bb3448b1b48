"""The hot path's lean Redis client, against the real Redis: replies, errors, pipelining, a caller
that gives up, a dropped connection."""

import asyncio
import socket
import threading

import pytest
import redis
from django.conf import settings
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError

from sentinel_site import redis as sredis
from sentinel_site.hotredis import HotRedis, encode_command
from tests.limits.conftest import DelayingProxy


def run(coro_fn):
    return asyncio.run(coro_fn())


@pytest.fixture
def rdb():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for key in client.scan_iter(sredis.rkey("hot", "*")):
        client.delete(key)
    client.close()


def k(name: str) -> str:
    return sredis.rkey("hot", name)


def test_encodes_commands_as_resp_bulk_strings():
    assert encode_command((b"SET", "ключ", 7, 1.5)) == (
        b"*4\r\n$3\r\nSET\r\n$8\r\n\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87\r\n$1\r\n7\r\n$3\r\n1.5\r\n"
    )
    with pytest.raises(TypeError):
        encode_command((b"SET", "k", True))
    with pytest.raises(TypeError):
        encode_command((b"SET", "k", None))


def test_reads_the_url_like_redis_py():
    client = HotRedis("redis://user:p%40ss@cache.internal:6380/4", connect_timeout=1)
    assert (client.host, client.port, client.db, client.username, client.password) == (
        "cache.internal",
        6380,
        4,
        "user",
        "p@ss",
    )
    assert HotRedis("redis://:secret@h", connect_timeout=1).db == 0
    unix = HotRedis("unix:///run/redis.sock?db=3", connect_timeout=1)
    assert (unix.unix_path, unix.db) == ("/run/redis.sock", 3)
    assert HotRedis("rediss://h:6390/0", connect_timeout=1).ssl is not None


def test_commands_answer_like_redis_py(rdb):
    async def scenario():
        client = HotRedis(settings.REDIS_URL, connect_timeout=1)
        assert await client.set(k("a"), "1", ex=60) is True
        assert await client.set(k("a"), "2", nx=True, px=1000) is None  # exists: not set
        assert await client.get(k("a")) == b"1"
        assert await client.get(k("missing")) is None
        assert await client.exists(k("a"), k("missing")) == 1
        entry = await client.xadd(k("stream"), {"r": '{"x":1}'})
        script = "return {KEYS[1], tonumber(ARGV[1]) + 1}"
        with pytest.raises(NoScriptError):
            await client.evalsha("0" * 40, 1, k("a"), 41)
        assert await client.eval(script, 1, k("a"), 41) == [k("a").encode(), 42]
        with pytest.raises(ResponseError):
            await client.execute(b"INCR", k("stream"))  # wrong type: an error reply, not a broken connection
        assert await client.get(k("a")) == b"1"
        return entry

    entry = run(scenario)
    assert rdb.xrange(k("stream")) == [(entry, {b"r": b'{"x":1}'})]
    assert rdb.ttl(k("a")) > 0


def test_concurrent_commands_share_one_connection_and_each_gets_its_own_reply(rdb):
    big = "x" * 1_000_000

    async def scenario():
        client = HotRedis(settings.REDIS_URL, connect_timeout=1)
        await asyncio.gather(*(client.set(k(f"n{i}"), str(i)) for i in range(300)), client.set(k("big"), big))
        replies = await asyncio.gather(*(client.get(k(f"n{i}")) for i in range(300)), client.get(k("big")))
        return replies, client._conn

    replies, conn = run(scenario)
    assert replies[:300] == [str(i).encode() for i in range(300)]
    assert replies[300] == big.encode()
    assert not conn.waiting


def test_a_caller_that_gives_up_leaves_the_connection_usable(rdb):
    rdb.set(k("first"), "1")
    rdb.set(k("second"), "2")
    proxy = DelayingProxy(settings.REDIS_URL, delay=0.5).start()  # delays the reply to the first EVALSHA
    try:

        async def scenario():
            client = HotRedis(proxy.url, connect_timeout=1)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await client.evalsha("0" * 40, 1, k("first"))
            # The late reply (a NOSCRIPT error) is read and dropped; this call gets its own.
            return await client.get(k("second"))

        assert run(scenario) == b"2"
    finally:
        proxy.stop()


def test_a_dropped_connection_fails_what_waits_and_the_next_call_reconnects():
    # A server that accepts, reads one command and closes the connection.
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def serve():
        conn, _ = server.accept()
        conn.recv(1024)
        conn.close()
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(b"$2\r\nok\r\n")
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    async def scenario():
        client = HotRedis(f"redis://127.0.0.1:{port}/0", connect_timeout=1)
        with pytest.raises(RedisConnectionError):
            await asyncio.wait_for(client.get("a"), 2)
        return await asyncio.wait_for(client.get("a"), 2)

    try:
        assert run(scenario) == b"ok"
    finally:
        thread.join(2)
        server.close()


def test_nothing_listening_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario():
        await HotRedis(f"redis://127.0.0.1:{port}/0", connect_timeout=1).get("a")

    with pytest.raises(RedisConnectionError):
        run(scenario)


def test_a_connection_without_replies_is_dropped_and_replaced(monkeypatch):
    """A peer that accepts and never answers (vanished without a reset): callers time out, and once
    the connection has been silent for STALLED_AFTER the next call connects again."""
    from sentinel_site import hotredis

    monkeypatch.setattr(hotredis, "STALLED_AFTER", 0.2)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    accepted = []

    def accept():
        for _ in range(2):
            conn, _ = server.accept()
            accepted.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()

    async def scenario():
        client = HotRedis(f"redis://127.0.0.1:{server.getsockname()[1]}/0", connect_timeout=1)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("a"), 0.1)
        first = client._conn
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("a"), 0.1)
        assert client._conn is first  # silent for 0.1 s only: still the same connection
        await asyncio.sleep(0.25)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("a"), 0.1)
        return first, client._conn

    try:
        first, second = run(scenario)
        thread.join(2)
        assert first.closed and second is not first and len(accepted) == 2
    finally:
        for conn in accepted:
            conn.close()
        server.close()
