"""Gateway benchmark: Sentinel's added latency, throughput and CPU against the mock provider.

    make bench                                   # or: python -m loadtests.bench
    make bench BENCH_ARGS="--quick"              # about a minute and a half
    make bench BENCH_ARGS="--compare-servers"    # + daphne vs uvicorn vs granian, 2 workers each
    make bench BENCH_ARGS="--soak 600"           # + 256 concurrent streams for 10 minutes
    python -m loadtests.bench --serve 600        # only start everything, for Locust

One run, bounded in time (the defaults take under three minutes on 2 cores, --compare-servers
about four; every load generator runs for a fixed time):

1. creates and migrates its own database (``--database-url``, default ``sentinel_bench``) and
   empties its own Redis database (``--redis-url``, default db 13); refuses the test suite's;
2. starts the mock provider (``loadtests.mock_provider``) and Sentinel
   (``sentinel_site.serve --workers 2 --server granian``) on free loopback ports;
3. seeds a tenant and a key with generous limits and budgets so that the whole pipeline runs:
   key auth, rate limits + budget reservation, guardrails (PII redact, secrets and injection
   flag), response cache on (every prompt is unique, so every request is a miss), usage spool,
   metrics, live counters; the catalog routes the benchmark model to the mock over HTTP;
4. measures the mock alone, then for each concurrency direct-to-mock and through-Sentinel one
   after the other (the difference is Sentinel's cost at that moment): non-stream with ``wrk``
   and a Lua script (unique prompt per request), streaming with an asyncio client (TTFT and
   total time), CPU seconds per request of the Sentinel processes (``/proc/<pid>/stat``), errors;
5. prints a markdown table and writes JSON to ``loadtests/results/``.

Everything listens on and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_DATABASE_URL = "postgres://root@127.0.0.1:5432/sentinel_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
# The test suite's database and Redis db: a benchmark must never empty them.
PROTECTED_DATABASES = {"sentinel", "test_sentinel"}
PROTECTED_REDIS_DBS = {"15"}
MODEL = "bench-gpt"
UPSTREAM_MODEL = "mock-gpt"
SERVERS = ("daphne", "uvicorn", "granian")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
PROMPT = "Summarise the quarterly report for the board in three short bullet points"


# =========================================================================== pure helpers
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """wrk's duration notation (``812.00us``, ``1.23ms``, ``2.01s``, ``1.00m``) in seconds."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(us|ms|s|m|h)\s*", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict:
    """Throughput, latency percentiles (seconds) and error counts from ``wrk --latency`` output."""
    result: dict = {"requests": 0, "rps": 0.0, "latency": {}, "errors": {}}
    match = re.search(r"^\s*(\d+) requests in ([0-9.]+\w+),", output, re.M)
    if match:
        result["requests"] = int(match.group(1))
        result["elapsed"] = parse_duration(match.group(2))
    match = re.search(r"^Requests/sec:\s*([0-9.]+)", output, re.M)
    if match:
        result["rps"] = float(match.group(1))
    block = output.split("Latency Distribution", 1)
    if len(block) == 2:
        for pct, value in re.findall(r"^\s*(\d+(?:\.\d+)?)%\s+([0-9.]+\w+)\s*$", block[1], re.M):
            result["latency"][f"p{pct.rstrip('0').rstrip('.') if '.' in pct else pct}"] = parse_duration(value)
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if match:
        for name, value in zip(("connect", "read", "write", "timeout"), match.groups(), strict=True):
            result["errors"][name] = int(value)
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        result["errors"]["non_2xx"] = int(match.group(1))
    result["error_count"] = sum(result["errors"].values())
    return result


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(min(rank, len(ordered))) - 1]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds (0 if it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def proc_rss_bytes(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc/<pid>/task/*/children)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(child) for child in (task / "children").read_text().split())
    return found


def tree_cpu_seconds(pid: int) -> float:
    return sum(proc_cpu_seconds(p) for p in process_tree(pid))


def tree_rss_bytes(pid: int) -> int:
    return sum(proc_rss_bytes(p) for p in process_tree(pid))


def wrk_script(*, path: str, model: str, token: str, run_id: str) -> str:
    """The wrk Lua script: a POST with a prompt no other request of any run has sent (cache miss)."""
    return f"""-- generated by loadtests/bench.py
local counter = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function request()
  counter = counter + 1
  local body = string.format(
    '{{"model":"{model}","max_tokens":64,"messages":[{{"role":"user","content":"{PROMPT} ({run_id}-%d-%d)"}}]}}',
    tid or 0, counter)
  return wrk.format("POST", "{path}", {{
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer {token}",
  }}, body)
end
"""


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def fmt_delta_ms(sentinel: float | None, direct: float | None) -> str:
    if sentinel is None or direct is None:
        return "-"
    return f"{(sentinel - direct) * 1000:+.2f}"


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---:" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def with_db_name(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def check_targets(database_url: str, redis_url: str) -> None:
    name = urlsplit(database_url).path.lstrip("/")
    if name in PROTECTED_DATABASES:
        raise SystemExit(f"bench: refusing to use the test suite's database {name!r}; pass --database-url")
    db = urlsplit(redis_url).path.lstrip("/") or "0"
    if db in PROTECTED_REDIS_DBS:
        raise SystemExit(f"bench: refusing to empty the test suite's Redis db {db}; pass --redis-url")
    for url in (database_url, redis_url):
        if urlsplit(url).hostname not in {"127.0.0.1", "localhost", "::1"}:
            raise SystemExit(f"bench: {url} is not on loopback; the benchmark only talks to 127.0.0.1")


# =========================================================================== processes
def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"bench: the process for {url} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"bench: {url} did not answer within {timeout:.0f}s")


def stop(proc: subprocess.Popen | None, timeout: float = 30.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Mock:
    proc: subprocess.Popen
    url: str


def start_mock(logdir: Path, workers: int) -> Mock:
    port = free_port()
    command = [sys.executable, "-m", "loadtests.mock_provider", "--port", str(port), "--log-limit", "100"]
    command += ["--workers", str(workers)]
    out = (logdir / "mock.log").open("w")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/_mock/stats", 30, proc)
    return Mock(proc, url)


def server_env(args: argparse.Namespace, logdir: Path) -> dict[str, str]:
    env = {**os.environ}
    env.update(
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        DJANGO_SETTINGS_MODULE="sentinel_site.settings",
        SENTINEL_ENV="development",
        DJANGO_DEBUG="false",
        SENTINEL_LOG_FORMAT="json",
        DJANGO_LOG_LEVEL="WARNING",
        PROMETHEUS_MULTIPROC_DIR=str(logdir / "metrics"),
        SENTINEL_METRICS_TOKEN="bench-metrics-token",
    )
    return env


def start_sentinel(args: argparse.Namespace, server: str, logdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # The production runner for every server: what is measured is what `make serve` runs.
    command = [sys.executable, "-m", "sentinel_site.serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--workers", str(args.workers), "--server", server]
    if not args.access_log:
        command.append("--no-access-log")
    out = (logdir / f"sentinel-{server}.log").open("a")
    proc = subprocess.Popen(
        command, cwd=ROOT, env=server_env(args, logdir), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/ready", 60, proc)
    return proc, url


# =========================================================================== database + seed
def prepare_database(args: argparse.Namespace, logdir: Path) -> None:
    import psycopg

    name = urlsplit(args.database_url).path.lstrip("/")
    with psycopg.connect(with_db_name(args.database_url, "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
            log(f"created database {name}")
    import redis

    redis.Redis.from_url(args.redis_url).flushdb()
    with (logdir / "migrate.log").open("w") as out:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput"],
            cwd=ROOT,
            env=server_env(args, logdir),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )


def django_setup(args: argparse.Namespace) -> None:
    os.environ.update(DATABASE_URL=args.database_url, REDIS_URL=args.redis_url, DJANGO_DEBUG="false")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sentinel_site.settings")
    import django

    django.setup()


def seed(mock_url: str) -> str:
    """The benchmark tenant and a fresh key with the whole pipeline on; returns the key's secret."""
    from decimal import Decimal

    from gateway.catalog_sync import catalog_sync
    from tenants.models import Tenant
    from tenants.services import api_key_create, tenant_create

    catalog_sync(
        data={
            "providers": [{"name": "bench-mock", "kind": "openai", "base_url": mock_url + "/v1"}],
            "models": [
                {
                    "name": MODEL,
                    "max_output_tokens": 1024,
                    "routes": [{"provider": "bench-mock", "model": UPSTREAM_MODEL, "priority": 1}],
                    "price": {"input": 0.50, "cached_input": 0.25, "output": 1.50},
                }
            ],
        }
    )
    tenant = Tenant.objects.filter(slug="bench").first() or tenant_create(slug="bench", name="Benchmark")[0]
    tenant.rpm, tenant.tpm = 10_000_000, 2_000_000_000
    tenant.budget_usd, tenant.budget_period = Decimal("1000000"), "month"
    tenant.guardrails = {"pii": "redact", "secrets": "flag", "injection": "flag"}
    tenant.cache_ttl_seconds = 300
    tenant.save()
    _, token = api_key_create(
        tenant=tenant,
        name=f"bench {datetime.now(UTC):%Y-%m-%d %H:%M:%S}",
        rpm=10_000_000,
        tpm=2_000_000_000,
        budget_usd=Decimal("1000000"),
        budget_period="month",
    )
    return token


# =========================================================================== wrk (non-stream)
@dataclass
class Point:
    """One measurement: a target, a mode and a concurrency."""

    target: str  # mock-alone | direct | sentinel
    mode: str  # json | stream
    concurrency: int
    duration: float
    requests: int = 0
    rps: float = 0.0
    latency: dict[str, float | None] = field(default_factory=dict)
    ttft: dict[str, float | None] = field(default_factory=dict)
    errors: int = 0
    error_detail: dict = field(default_factory=dict)
    cpu_seconds: float | None = None
    cpu_ms_per_request: float | None = None
    server: str = ""


def run_wrk(url: str, script: Path, concurrency: int, duration: float) -> dict:
    threads = min(2, concurrency)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration:.0f}s", "--timeout", "10s", "--latency"]
    command += ["-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30, check=False)
    if done.returncode != 0:
        raise SystemExit(f"bench: wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def measure_json(
    *, target: str, base_url: str, model: str, token: str, concurrency: int, duration: float, workdir: Path, pid=None
) -> Point:
    run_id = uuid.uuid4().hex[:10]
    script = workdir / f"post-{run_id}.lua"
    script.write_text(wrk_script(path="/v1/chat/completions", model=model, token=token, run_id=run_id))
    before = tree_cpu_seconds(pid) if pid else None
    result = run_wrk(base_url + "/v1/chat/completions", script, concurrency, duration)
    script.unlink()
    point = Point(target, "json", concurrency, duration, result["requests"], result["rps"])
    point.latency = {name: result["latency"].get(name) for name in ("p50", "p90", "p99")}
    point.errors, point.error_detail = result["error_count"], result["errors"]
    if before is not None:
        point.cpu_seconds = tree_cpu_seconds(pid) - before
        point.cpu_ms_per_request = 1000 * point.cpu_seconds / max(point.requests, 1)
    return point


# =========================================================================== asyncio stream client
class StreamStats:
    def __init__(self) -> None:
        self.ttft: list[float] = []
        self.total: list[float] = []
        self.frames = 0
        self.errors = 0
        self.error_kinds: dict[str, int] = {}

    def error(self, kind: str) -> None:
        self.errors += 1
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers


async def _body_parts(reader: asyncio.StreamReader, headers: dict[str, str]):
    """Yields the body as it arrives (chunked, Content-Length, or until the connection closes)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return
            yield (await reader.readexactly(size + 2))[:-2]
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        while chunk := await reader.read(65536):
            yield chunk


async def stream_worker(
    *, host: str, port: int, model: str, token: str, deadline: float, stats: StreamStats, prefix: str, loop_ids
) -> None:
    reader = writer = None
    while time.monotonic() < deadline:
        n = next(loop_ids)
        body = json.dumps(
            {
                "model": model,
                "max_tokens": 64,
                "stream": True,
                "messages": [{"role": "user", "content": f"{PROMPT} ({prefix}-{n})"}],
            }
        ).encode()
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nx-request-id: {prefix}-{n}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(request)
            status, headers = await _read_head(reader)
            first = None
            frames = 0
            tail = b""
            async for part in _body_parts(reader, headers):
                if first is None and b"data:" in part:
                    first = time.perf_counter()
                frames += part.count(b"data:")
                tail = (tail + part)[-256:]
            finished = time.perf_counter()
            if status != 200:
                stats.error(f"http_{status}")
            elif b"[DONE]" not in tail or b'"error"' in tail:
                stats.error("incomplete")
            else:
                stats.ttft.append((first or finished) - started)
                stats.total.append(finished - started)
                stats.frames += frames
            if headers.get("connection", "").lower() == "close":
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            stats.error(type(exc).__name__)
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def run_streams(*, base_url: str, model: str, token: str, concurrency: int, duration: float, prefix: str):
    parts = urlsplit(base_url)
    stats = StreamStats()
    deadline = time.monotonic() + duration
    ids = iter(range(10**12))
    started = time.perf_counter()
    await asyncio.gather(
        *(
            stream_worker(
                host=parts.hostname,
                port=parts.port,
                model=model,
                token=token,
                deadline=deadline,
                stats=stats,
                prefix=prefix,
                loop_ids=ids,
            )
            for _ in range(concurrency)
        )
    )
    return stats, time.perf_counter() - started


def new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop()


def measure_stream(
    *, target: str, base_url: str, model: str, token: str, concurrency: int, duration: float, pid=None
) -> Point:
    before = tree_cpu_seconds(pid) if pid else None
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    loop = new_loop()
    try:
        stats, elapsed = loop.run_until_complete(
            run_streams(
                base_url=base_url, model=model, token=token, concurrency=concurrency, duration=duration, prefix=prefix
            )
        )
    finally:
        loop.close()
    done = len(stats.total)
    point = Point(target, "stream", concurrency, duration, done, done / elapsed if elapsed else 0.0)
    point.latency = {f"p{q}": percentile(stats.total, q) for q in (50, 90, 99)}
    point.ttft = {f"p{q}": percentile(stats.ttft, q) for q in (50, 90, 99)}
    point.errors, point.error_detail = stats.errors, dict(stats.error_kinds)
    point.error_detail["frames_per_stream"] = round(stats.frames / done, 1) if done else 0
    if before is not None:
        point.cpu_seconds = tree_cpu_seconds(pid) - before
        point.cpu_ms_per_request = 1000 * point.cpu_seconds / max(done, 1)
    return point


# =========================================================================== report
def report_table(points: list[Point]) -> str:
    """One row per (mode, concurrency): direct vs Sentinel and the difference."""
    by_key = {(p.target, p.mode, p.concurrency): p for p in points}
    rows = []
    for mode in ("json", "stream"):
        for c in sorted({p.concurrency for p in points if p.mode == mode and p.target == "sentinel"}):
            s, d = by_key.get(("sentinel", mode, c)), by_key.get(("direct", mode, c))
            if s is None:
                continue
            row = [
                "non-stream" if mode == "json" else "stream",
                str(c),
                f"{d.rps:,.0f}" if d else "-",
                f"{s.rps:,.0f}",
            ]
            for q in ("p50", "p90", "p99"):
                row.append(
                    f"{fmt_ms(s.latency.get(q))} ({fmt_delta_ms(s.latency.get(q), d.latency.get(q) if d else None)})"
                )
            if mode == "stream":
                row.append(
                    f"{fmt_ms(s.ttft.get('p50'))} ({fmt_delta_ms(s.ttft.get('p50'), d.ttft.get('p50') if d else None)})"
                )
            else:
                row.append("")
            row.append("-" if s.cpu_ms_per_request is None else f"{s.cpu_ms_per_request:.2f}")
            row.append(f"{s.errors} / {d.errors if d else '-'}")
            rows.append(row)
    headers = [
        "mode",
        "conc.",
        "direct req/s",
        "Sentinel req/s",
        "p50 ms (added)",
        "p90 ms (added)",
        "p99 ms (added)",
        "TTFT p50 ms (added)",
        "CPU ms/req",
        "errors S / D",
    ]
    return markdown_table(headers, rows)


def compare_table(rows: list[dict]) -> str:
    headers = [
        "server",
        "non-stream c=1 p50 ms",
        "non-stream c=64 req/s",
        "p99 ms",
        "stream c=64 streams/s",
        "CPU ms/req",
        "errors",
    ]
    body = [
        [
            r["server"],
            fmt_ms(r["c1"].latency.get("p50")),
            f"{r['c64'].rps:,.0f}",
            fmt_ms(r["c64"].latency.get("p99")),
            f"{r['stream'].rps:,.0f}",
            "-" if r["c64"].cpu_ms_per_request is None else f"{r['c64'].cpu_ms_per_request:.2f}",
            str(r["c1"].errors + r["c64"].errors + r["stream"].errors),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def targets_summary(points: list[Point]) -> list[tuple[str, str, bool | None]]:
    by_key = {(p.target, p.mode, p.concurrency): p for p in points}
    out: list[tuple[str, str, bool | None]] = []
    s1, d1 = by_key.get(("sentinel", "json", 1)), by_key.get(("direct", "json", 1))
    if s1 and d1 and s1.latency.get("p50") is not None and d1.latency.get("p50") is not None:
        added50 = (s1.latency["p50"] - d1.latency["p50"]) * 1000
        added99 = (s1.latency["p99"] - d1.latency["p99"]) * 1000
        out.append(("added p50 at c=1 ≤ 2 ms", f"{added50:.2f} ms", added50 <= 2))
        out.append(("added p99 at c=1 ≤ 5 ms", f"{added99:.2f} ms", added99 <= 5))
    s64 = by_key.get(("sentinel", "json", 64))
    if s64:
        out.append(
            (
                "≥ 1,000 req/s at c=64, 0 errors",
                f"{s64.rps:,.0f} req/s, {s64.errors} errors",
                s64.rps >= 1000 and not s64.errors,
            )
        )
    best = max((p for p in points if p.target == "sentinel" and p.mode == "stream"), key=lambda p: p.rps, default=None)
    if best:
        out.append(
            ("≥ 250 streams/s (20 chunks)", f"{best.rps:,.0f} streams/s at c={best.concurrency}", best.rps >= 250)
        )
    st1, dt1 = by_key.get(("sentinel", "stream", 1)), by_key.get(("direct", "stream", 1))
    if st1 and dt1 and st1.ttft.get("p50") is not None and dt1.ttft.get("p50") is not None:
        added = (st1.ttft["p50"] - dt1.ttft["p50"]) * 1000
        out.append(("added TTFT p50 at c=1 ≤ 2 ms", f"{added:.2f} ms", added <= 2))
    return out


def machine() -> dict:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = int(Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]) * 1024
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "ram_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


# =========================================================================== soak
def drain_loop(args: argparse.Namespace, stop_file: Path) -> None:
    """A separate process moving the usage spool into the ledger, as the Celery worker does."""
    django_setup(args)
    from billing.services import usage_spool_drain

    while not stop_file.exists():
        result = usage_spool_drain(max_seconds=2)
        if not result.read:
            time.sleep(1)
    while usage_spool_drain(max_seconds=10).read:
        pass


async def soak_streams(*, base_url: str, token: str, streams: int, duration: float, prefix: str, pid: int, samples):
    parts = urlsplit(base_url)
    stats = StreamStats()
    deadline = time.monotonic() + duration
    ids = iter(range(10**12))

    async def sampler() -> None:
        started = time.monotonic()
        while time.monotonic() < deadline:
            samples.append((round(time.monotonic() - started, 1), tree_rss_bytes(pid)))
            await asyncio.sleep(min(10.0, max(1.0, duration / 60)))
        samples.append((round(time.monotonic() - started, 1), tree_rss_bytes(pid)))

    workers = [
        stream_worker(
            host=parts.hostname,
            port=parts.port,
            model=MODEL,
            token=token,
            deadline=deadline,
            stats=stats,
            prefix=prefix,
            loop_ids=ids,
        )
        for _ in range(streams)
    ]
    await asyncio.gather(sampler(), *workers)
    return stats


def run_soak(args: argparse.Namespace, *, url: str, pid: int, token: str, logdir: Path) -> dict:
    from billing.models import UsageEvent

    prefix = f"soak{uuid.uuid4().hex[:8]}"
    stop_file = logdir / "drain.stop"
    drainer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "loadtests.bench",
            "--database-url",
            args.database_url,
            "--redis-url",
            args.redis_url,
            "--drain-until",
            str(stop_file),
        ],
        cwd=ROOT,
        stdout=(logdir / "drain.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    samples: list[tuple[float, int]] = []
    log(f"soak: {args.soak_streams} concurrent streams for {args.soak:.0f}s")
    loop = new_loop()
    try:
        stats = loop.run_until_complete(
            soak_streams(
                base_url=url,
                token=token,
                streams=args.soak_streams,
                duration=args.soak,
                prefix=prefix,
                pid=pid,
                samples=samples,
            )
        )
    finally:
        loop.close()
    time.sleep(2)  # the last streams' finishers
    stop_file.touch()
    try:
        drainer.wait(120)
    except subprocess.TimeoutExpired:
        stop(drainer)
    completed = len(stats.total)
    recorded = UsageEvent.objects.filter(request_id__startswith=prefix + "-").count()
    ok = UsageEvent.objects.filter(request_id__startswith=prefix + "-", status="ok").count()
    # Memory after warm-up (the first tenth) against the end: pools and caches fill at the start.
    warm = [rss for t, rss in samples if t >= args.soak / 10] or [rss for _, rss in samples]
    growth = (samples[-1][1] - warm[0]) / warm[0] * 100 if warm and warm[0] else None
    return {
        "streams": args.soak_streams,
        "seconds": args.soak,
        "completed": completed,
        "streams_per_second": completed / args.soak,
        "errors": stats.errors,
        "error_detail": stats.error_kinds,
        "ttft_p50": percentile(stats.ttft, 50),
        "total_p50": percentile(stats.total, 50),
        "total_p99": percentile(stats.total, 99),
        "usage_rows": recorded,
        "usage_rows_ok": ok,
        "rss_samples": samples,
        "rss_start_mib": round(samples[0][1] / 2**20, 1) if samples else None,
        "rss_after_warmup_mib": round(warm[0] / 2**20, 1) if warm else None,
        "rss_end_mib": round(samples[-1][1] / 2**20, 1) if samples else None,
        "rss_max_mib": round(max(s for _, s in samples) / 2**20, 1) if samples else None,
        "rss_growth_percent": round(growth, 2) if growth is not None else None,
    }


# =========================================================================== main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 s per point (about a minute in all)")
    parser.add_argument("--duration", type=float, default=None, help="seconds per measured point (default 8)")
    parser.add_argument("--concurrency", default="1,16,64", help="comma-separated levels (default 1,16,64)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds of load before measuring (default 15)")
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default=os.environ.get("SENTINEL_SERVER") or "granian",
        help="ASGI server for Sentinel (default: $SENTINEL_SERVER or granian, the production choice)",
    )
    parser.add_argument("--workers", type=int, default=2, help="Sentinel worker processes (default 2)")
    parser.add_argument("--mock-workers", type=int, default=1, help="mock provider processes (default 1)")
    parser.add_argument("--compare-servers", action="store_true", help="also compare daphne, uvicorn and granian")
    parser.add_argument("--soak", type=float, default=0, metavar="SECONDS", help="then soak with concurrent streams")
    parser.add_argument("--soak-streams", type=int, default=256, help="concurrent streams of the soak (default 256)")
    parser.add_argument("--no-stream", dest="stream", action="store_false", help="skip the streaming points")
    parser.add_argument("--access-log", action="store_true", help="keep Sentinel's per-request access log on")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL)
    parser.add_argument("--output", type=Path, default=RESULTS, help="directory for the JSON result")
    parser.add_argument(
        "--serve",
        type=float,
        default=0,
        metavar="SECONDS",
        help="only start the mock and Sentinel with a seeded key (for Locust), print them, stop after SECONDS",
    )
    parser.add_argument("--drain-until", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.duration = args.duration or (4.0 if args.quick else 8.0)
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.soak and args.soak > 3600:
        parser.error("--soak is at most 3600 seconds")
    return args


def point_line(p: Point) -> str:
    extra = f", TTFT p50 {fmt_ms(p.ttft.get('p50'))} ms" if p.mode == "stream" else ""
    cpu = f", CPU {p.cpu_ms_per_request:.2f} ms/req" if p.cpu_ms_per_request is not None else ""
    return (
        f"{p.target:8} {p.mode:6} c={p.concurrency:<3} {p.rps:8,.0f}/s  p50 {fmt_ms(p.latency.get('p50'))} "
        f"p99 {fmt_ms(p.latency.get('p99'))} ms{extra}{cpu}, errors {p.errors}"
    )


def measure_gateway(args, *, server: str, mock: Mock, token: str, workdir: Path, levels, stream_levels, points):
    proc, url = start_sentinel(args, server, workdir)
    try:
        log(f"sentinel ({server}, {args.workers} workers) on {url}; warming up")
        # Pools (Redis, upstream), caches and the processes' memory fill up first (first-touch page
        # faults are expensive in a VM): the first 5-10 s under load cost up to twice the CPU per
        # request of the steady state, which is what this measures.
        measure_json(
            target="warmup",
            base_url=url,
            model=MODEL,
            token=token,
            concurrency=64,
            duration=args.warmup,
            workdir=workdir,
        )
        measure_stream(target="warmup", base_url=url, model=MODEL, token=token, concurrency=64, duration=3)
        rounds = [(c, partial(measure_json, workdir=workdir)) for c in levels]
        rounds += [(c, measure_stream) for c in stream_levels]
        for c, measure in rounds:
            # Direct-to-mock just before through-Sentinel: the difference is Sentinel's cost right then.
            for target, base, model, pid in (
                ("direct", mock.url, UPSTREAM_MODEL, None),
                ("sentinel", url, MODEL, proc.pid),
            ):
                p = measure(
                    target=target,
                    base_url=base,
                    model=model,
                    token=token,
                    concurrency=c,
                    duration=args.duration,
                    pid=pid,
                )
                p.server = server if target == "sentinel" else ""
                points.append(p)
                log(point_line(p))
    except BaseException:
        stop(proc)
        raise
    return proc, url


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def serve_for(args: argparse.Namespace, *, token: str, workdir: Path) -> None:
    proc, url = start_sentinel(args, args.server, workdir)
    try:
        print(f"export SENTINEL_URL={url} SENTINEL_KEY={token} SENTINEL_MODEL={MODEL}", flush=True)
        log(f"sentinel ({args.server}, {args.workers} workers) on {url} for {args.serve:.0f}s (Ctrl-C stops)")
        deadline = time.monotonic() + args.serve
        with contextlib.suppress(KeyboardInterrupt):
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
    finally:
        stop(proc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_targets(args.database_url, args.redis_url)
    if args.drain_until is not None:
        drain_loop(args, args.drain_until)
        return 0
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is not installed (make test-deps installs it)")
    # SIGTERM stops like Ctrl-C (which a background job ignores): the servers started are stopped.
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="sentinel-bench-"))
    (workdir / "metrics").mkdir()
    mock = None
    procs: list[subprocess.Popen] = []
    points: list[Point] = []
    comparison: list[dict] = []
    soak = None
    try:
        log(
            f"database {urlsplit(args.database_url).path.lstrip('/')}, redis db {urlsplit(args.redis_url).path.lstrip('/')}; migrating"
        )
        prepare_database(args, workdir)
        django_setup(args)
        mock = start_mock(workdir, args.mock_workers)
        token = seed(mock.url)
        log(f"mock provider on {mock.url}")
        if args.serve:
            serve_for(args, token=token, workdir=workdir)
            return 0
        points.append(
            measure_json(
                target="mock-alone",
                base_url=mock.url,
                model=UPSTREAM_MODEL,
                token="x",
                concurrency=64,
                duration=args.duration,
                workdir=workdir,
            )
        )
        log(point_line(points[-1]))
        proc, url = measure_gateway(
            args,
            server=args.server,
            mock=mock,
            token=token,
            workdir=workdir,
            levels=args.levels,
            stream_levels=args.levels if args.stream else [],
            points=points,
        )
        procs.append(proc)
        if args.soak:
            soak = run_soak(args, url=url, pid=proc.pid, token=token, logdir=workdir)
            log(f"soak: {json.dumps({k: v for k, v in soak.items() if k != 'rss_samples'})}")
        stop(proc)
        if args.compare_servers:
            for server in SERVERS:
                extra: list[Point] = []
                proc, server_url = measure_gateway(
                    args,
                    server=server,
                    mock=mock,
                    token=token,
                    workdir=workdir,
                    levels=[],
                    stream_levels=[],
                    points=extra,
                )
                try:
                    row = {"server": server}
                    for name, c in (("c1", 1), ("c64", 64)):
                        row[name] = measure_json(
                            target="sentinel",
                            base_url=server_url,
                            model=MODEL,
                            token=token,
                            concurrency=c,
                            duration=args.duration,
                            workdir=workdir,
                            pid=proc.pid,
                        )
                        log(f"{server}: {point_line(row[name])}")
                    row["stream"] = measure_stream(
                        target="sentinel",
                        base_url=server_url,
                        model=MODEL,
                        token=token,
                        concurrency=64,
                        duration=args.duration,
                        pid=proc.pid,
                    )
                    log(f"{server}: {point_line(row['stream'])}")
                    comparison.append(row)
                finally:
                    stop(proc)
    finally:
        for proc in procs:
            stop(proc)
        if mock is not None:
            stop(mock.proc)
    elapsed = time.monotonic() - started
    table = report_table(points)
    mock_alone = next(p for p in points if p.target == "mock-alone")
    lines = [
        f"## Sentinel benchmark ({args.server}, {args.workers} workers, {args.duration:.0f} s per point)",
        "",
        f"Machine: {machine()['nproc']} CPUs, {machine()['cpu']}, {machine()['ram_gib']} GiB RAM. "
        f"Mock provider alone: {mock_alone.rps:,.0f} req/s at c=64 (p50 {fmt_ms(mock_alone.latency.get('p50'))} ms, "
        f"{mock_alone.errors} errors).",
        "",
        "Latencies are Sentinel's; (added) is Sentinel minus direct-to-mock measured just before. "
        "Stream latency is the total time of a 20-chunk stream. CPU is Sentinel's processes only.",
        "",
        table,
        "",
        "Targets:",
        "",
    ]
    lines += [
        f"- {'met' if ok else 'MISSED' if ok is not None else '?'}: {name} — {value}"
        for name, value, ok in targets_summary(points)
    ]
    if comparison:
        lines += ["", "Servers (2 workers each, same pipeline):", "", compare_table(comparison)]
    if soak:
        lines += [
            "",
            f"Soak: {soak['streams']} concurrent streams for {soak['seconds']:.0f} s: {soak['completed']:,} streams "
            f"({soak['streams_per_second']:.0f}/s), {soak['errors']} errors, {soak['usage_rows']:,} usage rows "
            f"in the ledger, RSS {soak['rss_after_warmup_mib']} MiB after warm-up -> {soak['rss_end_mib']} MiB "
            f"at the end ({soak['rss_growth_percent']:+.1f} %), max {soak['rss_max_mib']} MiB.",
        ]
    lines += ["", f"Run took {elapsed:.0f} s."]
    text = "\n".join(lines)
    print(text)
    args.output.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.output / f"bench-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "when": stamp,
                "machine": machine(),
                "server": args.server,
                "workers": args.workers,
                "duration": args.duration,
                "points": [asdict(p) for p in points],
                "targets": [{"target": n, "value": v, "met": ok} for n, v, ok in targets_summary(points)],
                "servers": [
                    {"server": r["server"], **{k: asdict(v) for k, v in r.items() if k != "server"}} for r in comparison
                ],
                "soak": soak,
                "table": table,
                "seconds": round(elapsed, 1),
            },
            indent=2,
        )
    )
    (args.output / f"bench-{stamp}.md").write_text(text + "\n")
    log(f"wrote {out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
