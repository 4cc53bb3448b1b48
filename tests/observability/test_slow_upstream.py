import itertools
import time

import httpx
import pytest

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
