import json
import signal
import socket
import threading
import time
import uuid

import httpx
import pytest

from billing.models import UsageEvent

pytestmark = pytest.mark.django_db(transaction=True)

GRACE = 20
STREAM_SECONDS = 3  # 20 chunks, 150 ms apart


class Stream(threading.Thread):
    """One raw SSE request, recording every line, so the test sees the literal ``data: [DONE]``."""

    def __init__(self, url: str, token: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.token = token
        self.request_id = f"drain-{uuid.uuid4().hex[:16]}"
        self.first_chunk = threading.Event()
        self.lines: list[str] = []
        self.status: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        body = {
            "model": "gpt-test",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "Tell me a slow story"}],
        }
        headers = {"authorization": f"Bearer {self.token}", "x-request-id": self.request_id}
        try:
            with httpx.stream(
                "POST", f"{self.url}/v1/chat/completions", json=body, headers=headers, timeout=GRACE + 10
            ) as response:
                self.status = response.status_code
                for line in response.iter_lines():
                    self.lines.append(line)
                    if line.startswith("data: {"):
                        self.first_chunk.set()
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.first_chunk.set()

    def content(self) -> str:
        text = []
        for line in self.lines:
            if line.startswith("data: {"):
                chunk = json.loads(line[len("data: ") :])
                text += [(choice.get("delta") or {}).get("content") or "" for choice in chunk.get("choices", [])]
        return "".join(text)


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except ConnectionRefusedError:
        return True


@pytest.mark.parametrize("server_name", ["daphne", "uvicorn", "granian"])
def test_sigterm_lets_open_streams_finish_records_their_usage_and_exits_zero(serve, upstream, api_token, server_name):
    upstream.configure(models={"gpt-test": {"chunk_delay_ms": 150, "chunks": 20}})
    server = serve("--readiness-delay", "1", "--server", server_name, SENTINEL_SHUTDOWN_GRACE=str(GRACE))
    assert httpx.get(f"{server.url}/health/ready", timeout=5).status_code == 200

    streams = [Stream(server.url, api_token) for _ in range(3)]
    for stream in streams:
        stream.start()
    for stream in streams:
        assert stream.first_chunk.wait(15), "the stream did not start"
    assert all(stream.error is None and stream.status == 200 for stream in streams)

    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)

    # Readiness turns false first, while the listener still accepts (--readiness-delay 1)...
    ready = httpx.get(f"{server.url}/health/ready", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["checks"]["shutdown"] == "in progress"
    # ...then new connections are refused while the streams are still running.
    while not refused(server.port):
        assert time.monotonic() - signalled < 5, "the listener did not close"
        time.sleep(0.05)
    assert any(stream.is_alive() for stream in streams), "the streams ended before the listener closed"

    for stream in streams:
        stream.join(GRACE)
        assert stream.error is None, stream.error
        assert stream.lines[-1] == "data: [DONE]" or "data: [DONE]" in stream.lines
        assert len(stream.content()) > 20

    assert server.proc.wait(timeout=GRACE + 15) == 0, server.log()[-3000:]
    elapsed = time.monotonic() - signalled
    assert elapsed < GRACE, f"took {elapsed:.1f}s: it waited for the deadline instead of the streams"
    assert elapsed > STREAM_SECONDS - 1.5

    # The runner flushed the usage spool on its way out: the rows are in the ledger already.
    events = {e.request_id: e for e in UsageEvent.objects.filter(request_id__in=[s.request_id for s in streams])}
    assert set(events) == {s.request_id for s in streams}
    for event in events.values():
        assert event.status == UsageEvent.Status.OK
        assert event.http_status == 200
        assert event.stream and event.completion_tokens > 0 and event.cost_micros > 0
    log = server.log()
    assert "shutdown: SIGTERM received" in log and "shutdown: done" in log


@pytest.mark.parametrize("server_name", ["daphne", "granian"])
def test_streams_still_open_at_the_deadline_are_cut_and_recorded(serve, upstream, api_token, server_name):
    upstream.configure(models={"gpt-test": {"chunk_delay_ms": 500, "chunks": 40}})
    server = serve("--server", server_name, SENTINEL_SHUTDOWN_GRACE="1")
    stream = Stream(server.url, api_token)
    stream.start()
    assert stream.first_chunk.wait(15)

    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    stream.join(20)
    assert "data: [DONE]" not in stream.lines
    assert server.proc.wait(timeout=20) == 0, server.log()[-3000:]
    assert time.monotonic() - signalled < 12

    event = UsageEvent.objects.get(request_id=stream.request_id)
    assert event.status == UsageEvent.Status.CLIENT_CLOSED
    assert event.completion_tokens > 0  # charged for what was streamed before the cut
    assert "grace period over, cancelling 1 requests" in server.log()


@pytest.mark.parametrize("server_name", ["daphne", "granian"])
def test_second_signal_stops_waiting(serve, upstream, api_token, server_name):
    upstream.configure(models={"gpt-test": {"chunk_delay_ms": 500, "chunks": 40}})
    server = serve("--server", server_name, SENTINEL_SHUTDOWN_GRACE=str(GRACE))
    stream = Stream(server.url, api_token)
    stream.start()
    assert stream.first_chunk.wait(15)

    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=20) == 0, server.log()[-3000:]
    assert time.monotonic() - signalled < 10
    stream.join(10)
    assert UsageEvent.objects.filter(request_id=stream.request_id).exists()
