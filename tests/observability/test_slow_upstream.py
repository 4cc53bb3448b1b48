import itertools
import time

import httpx
import pytest

from tests.gateway.conftest import usage_events

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_slow_stream_is_kept_alive_with_heartbeats_and_completes(live_server_factory, upstream, api_token):
    server = live_server_factory(SENTINEL_STREAM_HEARTBEAT="0.3")
    upstream.configure(models={"gpt-test": {"chunk_delay_ms": 1200, "chunks": 3}})
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "take your time"}]}
    lines: list[tuple[float, str]] = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{server.url}/v1/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {api_token}"},
        timeout=httpx.Timeout(20, read=1.0),  # a client that gives up after 1 s of silence
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line:
                lines.append((time.monotonic() - started, line))
    texts = [text for _, text in lines]
    assert texts[-1] == "data: [DONE]"
    assert texts.count(": keep-alive") >= 4  # about three per 1.2 s gap
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(lines)]
    assert max(gaps) < 1.0


def test_the_total_timeout_ends_a_trickling_stream_and_a_slow_answer(live_server_factory, upstream, api_token):
    server = live_server_factory(SENTINEL_UPSTREAM_TOTAL_TIMEOUT="1.5", SENTINEL_STREAM_HEARTBEAT="0.4")
    upstream.configure(models={"gpt-test": {"chunk_delay_ms": 400, "chunks": 20}})  # ~8 s in all
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": "trickle"}]}
    headers = {"authorization": f"Bearer {api_token}"}
    started = time.monotonic()
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=20) as response:
        assert response.status_code == 200
        stream_id = response.headers["x-request-id"]
        lines = [line for line in response.iter_lines() if line]
    assert time.monotonic() - started < 6  # cut near 1.5 s, not after the upstream's 8 s
    assert any(line.startswith("data: {") and '"content"' in line for line in lines)  # it did stream first
    assert '"code":"upstream_timeout"' in lines[-1] and "data: [DONE]" not in lines

    upstream.configure(models={"gpt-test": {"latency_ms": 4000}})
    reply = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "slow"}]},
        headers=headers,
        timeout=20,
    )
    assert reply.status_code == 504 and reply.json()["error"]["type"]

    # Both are recorded once, as upstream timeouts (the stream's usage estimated from what it sent).
    (streamed,) = usage_events(stream_id)
    (answered,) = usage_events(reply.headers["x-request-id"])
    assert (streamed.http_status, streamed.status, streamed.estimated) == (504, "error", True)
    assert streamed.completion_tokens > 0
    assert (answered.http_status, answered.status) == (504, "error")
