"""The stream relay's reading: chunks that arrived together leave in one write, none waits for a
later one, and a slow client holds the upstream back (bounded read-ahead)."""

import asyncio
import json
import time
from types import SimpleNamespace

from gateway import pipeline
from gateway.providers.base import StreamChunk


def chunk(i: int) -> StreamChunk:
    obj = {"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"w{i} "}}]}
    return StreamChunk(obj=obj, raw=b"data: " + json.dumps(obj).encode() + b"\n\n")


class FakeCall(SimpleNamespace):
    def __init__(self) -> None:
        super().__init__(
            public_model="gpt-test",
            prompt_estimate=3,
            reserve_prompt_tokens=3,
            started=time.perf_counter(),
            include_usage=False,
            admission=None,
            attempts=SimpleNamespace(route=None),
            finished=[],
        )

    async def finish(self, **outcome) -> None:
        self.finished.append(outcome)


class Upstream:
    """An upstream stream: ``ready`` chunks at once, then ``later`` after a pause each."""

    def __init__(self, ready: int, later: int = 0, pause: float = 0.05) -> None:
        self.ready, self.later, self.pause = ready, later, pause
        self.pulled = 0
        self.closed = False

    async def stream(self):
        try:
            for i in range(self.ready + self.later):
                if i >= self.ready:
                    await asyncio.sleep(self.pause)
                self.pulled += 1
                yield chunk(i)
        finally:
            self.closed = True


async def relay_of(upstream: Upstream, call: FakeCall):
    iterator = upstream.stream()
    first = await iterator.__anext__()
    return pipeline.StreamRelay(call, iterator, first, "openai"), iterator


def test_chunks_that_arrived_together_leave_together_and_none_waits(settings):
    settings.SENTINEL_STREAM_HEARTBEAT = 10

    async def scenario():
        call = FakeCall()
        relay, _ = await relay_of(Upstream(ready=6, later=2), call)
        writes = [w async for w in relay.run()]
        await pipeline.drain_background(2)
        return writes, call

    writes, call = asyncio.run(scenario())
    body = b"".join(writes)
    assert body == b"".join(chunk(i).raw for i in range(8)) + pipeline.DONE
    # The first chunk at once; the five that were waiting in one write; the two late ones each
    # on their own as they came (the last with [DONE]).
    assert [w.count(b"data: {") for w in writes] == [1, 5, 1, 1]
    assert call.finished and call.finished[0]["status"] == "ok"


def test_a_slow_client_holds_the_upstream_back(settings):
    settings.SENTINEL_STREAM_HEARTBEAT = 10

    async def scenario():
        call = FakeCall()
        upstream = Upstream(ready=5000)
        relay, _ = await relay_of(upstream, call)
        writes = relay.run()
        await writes.__anext__()
        await writes.__anext__()
        await asyncio.sleep(0.1)  # the client reads nothing for a while
        pulled = upstream.pulled
        await writes.aclose()
        await pipeline.drain_background(2)
        return pulled, upstream

    pulled, upstream = asyncio.run(scenario())
    assert pulled <= 2 * pipeline.READ_AHEAD + 2
    assert upstream.closed  # the upstream stream was closed with the relay
