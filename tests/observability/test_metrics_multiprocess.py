import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.django_db(transaction=True)


def requests_total(text: str) -> float:
    for family in text_string_to_metric_families(text):
        if family.name == "sentinel_requests":
            return sum(s.value for s in family.samples if s.name == "sentinel_requests_total")
    return 0.0


def served_by_pid(directory: Path) -> dict[str, float]:
    """sentinel_requests_total per worker, read from each worker's own sample file."""
    served = {}
    for path in directory.glob("counter_*.db"):
        pid = path.stem.removeprefix("counter_")
        families = MultiProcessCollector.merge([str(path)])
        served[pid] = sum(
            s.value for f in families if f.name == "sentinel_requests" for s in f.samples if s.name.endswith("_total")
        )
    return served


def test_any_worker_answers_the_scrape_with_every_workers_counts(serve, api_token, tmp_path):
    directory = tmp_path / "metrics"
    server = serve("--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(directory))
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "count me"}]}
    headers = {"authorization": f"Bearer {api_token}"}

    def complete(_: int) -> int:
        # A new connection each time, so the kernel spreads them over the two workers' accept().
        return httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=headers, timeout=20).status_code

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        while sum(1 for n in served_by_pid(directory).values() if n > 0) < 2:
            assert sent < 400, f"one worker took every connection: {served_by_pid(directory)}"
            assert set(pool.map(complete, range(16))) == {200}
            sent += 16
    assert sum(served_by_pid(directory).values()) == sent

    # Every scrape, whichever worker answers it, reports the sum over both.
    scrapes = [requests_total(httpx.get(f"{server.url}/metrics", timeout=10).text) for _ in range(10)]
    assert scrapes == [sent] * 10

    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=40) == 0, server.log()[-3000:]
    # Each worker removed its live gauges on exit (livesum gauges must not count dead workers).
    assert not list(directory.glob("gauge_live*.db"))
