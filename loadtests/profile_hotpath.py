"""Sentinel's CPU per gateway request without an HTTP server, and where it goes.

    python -m loadtests.profile_hotpath                    # CPU ms per request, three rounds
    python -m loadtests.profile_hotpath --profile          # + cProfile, own time grouped by package

Same database, Redis db, mock provider and seeded key as ``loadtests.bench`` (the whole pipeline on,
every request a cache miss), but the ASGI application is called in this process by an asyncio
driver (``--concurrency`` requests in flight), so the figure is the application's own CPU
(``time.process_time``: Django, ninja, the pipeline, the Redis and upstream clients) without a
server's HTTP layer or a load generator sharing the CPU. cProfile roughly doubles the time
spent; its shares, not its absolute figures, are the point. Bounded: ``--requests`` per round.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import cProfile
import json
import os
import pstats
import tempfile
import time
import uuid
from pathlib import Path

from loadtests.bench import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    MODEL,
    PROMPT,
    check_targets,
    django_setup,
    log,
    prepare_database,
    seed,
    start_mock,
    stop,
)


def _scope(token: str, body: bytes) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
    }


async def one_request(application, token: str, prompt: str) -> int:
    body = json.dumps({"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]}).encode()
    done = asyncio.Event()
    state = {"sent": False, "status": 0}

    async def receive():
        if not state["sent"]:
            state["sent"] = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            state["status"] = message["status"]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await application(_scope(token, body), receive, send)
    return state["status"]


async def run_round(application, token: str, *, requests: int, concurrency: int, run_id: str) -> int:
    """``requests`` unique-prompt requests, ``concurrency`` in flight; returns how many were not 200."""
    slots = asyncio.Semaphore(concurrency)
    failed = 0

    async def worker(i: int) -> None:
        nonlocal failed
        async with slots:
            if await one_request(application, token, f"{PROMPT} ({run_id}-{i})") != 200:
                failed += 1

    await asyncio.gather(*(worker(i) for i in range(requests)))
    return failed


def grouped(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own (not cumulative) time by package: site-packages by distribution, Sentinel by module."""
    root = str(Path(__file__).resolve().parent.parent) + os.sep
    groups: collections.Counter[str] = collections.Counter()
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        if "site-packages" + os.sep in filename:
            key = filename.split("site-packages" + os.sep, 1)[1].split(os.sep, 1)[0]
        elif filename.startswith(root):
            key = "sentinel: " + filename[len(root) :]
        elif "python3" in filename and os.sep + "lib" + os.sep in filename:
            key = "stdlib: " + filename.rsplit(os.sep + "lib" + os.sep, 1)[1].split(os.sep)[1].removesuffix(".py")
        else:
            key = "built-in: " + name.split(" of ")[0].strip("<>")[:40]
        groups[key] += own
    total = sum(groups.values()) or 1.0
    return [(key, own / total) for key, own in groups.most_common()]


async def main_async(args, token: str) -> None:
    from gateway.providers.base import _clients as upstream_clients
    from sentinel_site.asgi import application

    run_id = uuid.uuid4().hex[:8]
    failed = await run_round(application, token, requests=args.warmup, concurrency=args.concurrency, run_id=run_id)
    for n in range(args.rounds):
        started_cpu, started = time.process_time(), time.perf_counter()
        failed += await run_round(
            application, token, requests=args.requests, concurrency=args.concurrency, run_id=f"{run_id}{n}"
        )
        cpu, wall = time.process_time() - started_cpu, time.perf_counter() - started
        log(
            f"round {n + 1}: {args.requests} requests, {1000 * cpu / args.requests:.2f} ms CPU per request, "
            f"{args.requests / wall:,.0f} requests/s on one CPU"
        )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        failed += await run_round(
            application, token, requests=args.requests, concurrency=args.concurrency, run_id=f"{run_id}p"
        )
        profiler.disable()
        stats = pstats.Stats(profiler)
        print("\nown time by package (cProfile):")
        for key, share in grouped(stats)[:25]:
            print(f"  {100 * share:5.1f} %  {key}")
        print("\ntop functions by own time:")
        stats.sort_stats("tottime").print_stats(20)
    for client in list(upstream_clients.values()):
        await client.aclose()
    if failed:
        raise SystemExit(f"profile_hotpath: {failed} requests did not answer 200")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.profile_hotpath", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1500, help="requests before measuring (default 1500)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--profile", action="store_true", help="then one round under cProfile")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL") or DEFAULT_DATABASE_URL)
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL") or DEFAULT_REDIS_URL)
    args = parser.parse_args(argv)
    check_targets(args.database_url, args.redis_url)
    workdir = Path(tempfile.mkdtemp(prefix="sentinel-profile-"))
    (workdir / "metrics").mkdir()
    os.environ.update(
        SENTINEL_ENV="development",
        SENTINEL_LOG_FORMAT="json",
        DJANGO_LOG_LEVEL="WARNING",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
        SENTINEL_METRICS_TOKEN="profile-metrics-token",
    )
    prepare_database(args, workdir)
    django_setup(args)
    mock = start_mock(workdir, 1)
    try:
        token = seed(mock.url)
        import uvloop  # the servers' event loop

        uvloop.run(main_async(args, token))
    finally:
        stop(mock.proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
