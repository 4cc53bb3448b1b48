"""Locust scenarios against a running Sentinel: health, cache miss, cache hit, streaming, and a ramp.

A server to point them at (mock provider + Sentinel with 2 workers + a seeded key, on loopback):

    python -m loadtests.bench --serve 600          # prints SENTINEL_URL and SENTINEL_KEY

Each scenario headless, bounded in time (the user class is the last argument):

    locust -f loadtests/locustfile.py --headless --run-time 60s -u 16 -r 16 --host $SENTINEL_URL HealthUser
    ... CacheMissUser | CacheHitUser | StreamUser
    SENTINEL_LOCUST_RAMP=1 locust -f loadtests/locustfile.py --headless --run-time 60s --host $SENTINEL_URL

``SENTINEL_LOCUST_RAMP=1`` turns on ``RampShape``: 10, then 50, then 100 users (a third of
``SENTINEL_RAMP_SECONDS``, default 60, each) of all four scenarios mixed. ``SENTINEL_KEY`` is the
bearer key, ``SENTINEL_MODEL`` the model (default ``bench-gpt``, the benchmark's).
A response that is not what the scenario expects (status, cache header, an unfinished stream)
counts as a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid

from locust import LoadTestShape, between, task
from locust.contrib.fasthttp import FastHttpUser

KEY = os.environ.get("SENTINEL_KEY", "")
MODEL = os.environ.get("SENTINEL_MODEL", "bench-gpt")
RUN = uuid.uuid4().hex[:8]
_ids = itertools.count()


def chat_body(prompt: str, *, stream: bool = False) -> str:
    body = {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": prompt}]}
    if stream:
        body["stream"] = True
    return json.dumps(body)


def unique_prompt() -> str:
    return f"Summarise the quarterly report in three bullet points ({RUN}-{next(_ids)})"


class GatewayUser(FastHttpUser):
    abstract = True
    wait_time = between(0.0, 0.05)

    def post_chat(self, body: str, *, name: str, stream: bool = False):
        return self.client.post(
            "/v1/chat/completions",
            data=body,
            headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            name=name,
            stream=stream,
            catch_response=True,
        )


class HealthUser(GatewayUser):
    weight = 1

    @task
    def health(self) -> None:
        self.client.get("/health/live", name="GET /health/live")


class CacheMissUser(GatewayUser):
    weight = 3

    @task
    def miss(self) -> None:
        with self.post_chat(chat_body(unique_prompt()), name="POST chat (cache miss)") as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif response.headers.get("x-sentinel-cache") != "miss":
                response.failure(f"x-sentinel-cache: {response.headers.get('x-sentinel-cache')}")


class CacheHitUser(GatewayUser):
    weight = 3

    def on_start(self) -> None:
        # One prompt per user: its first request fills the cache, every later one is a hit.
        self.prompt = f"What is the capital of France? ({RUN}-hit-{next(_ids)})"
        with self.post_chat(chat_body(self.prompt), name="POST chat (cache fill)") as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")

    @task
    def hit(self) -> None:
        with self.post_chat(chat_body(self.prompt), name="POST chat (cache hit)") as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif response.headers.get("x-sentinel-cache") != "hit":
                response.failure(f"x-sentinel-cache: {response.headers.get('x-sentinel-cache')}")


class StreamUser(GatewayUser):
    weight = 3

    @task
    def stream(self) -> None:
        with self.post_chat(chat_body(unique_prompt(), stream=True), name="POST chat (stream)") as response:
            text = response.text or ""
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
            elif not text.rstrip().endswith("data: [DONE]") or '"error"' in text:
                response.failure("stream did not finish with [DONE]")


if os.environ.get("SENTINEL_LOCUST_RAMP"):

    class RampShape(LoadTestShape):
        """10, 50, then 100 users of every scenario, a third of the run each."""

        stages = (10, 50, 100)
        seconds = float(os.environ.get("SENTINEL_RAMP_SECONDS", "60"))

        def tick(self):
            elapsed = self.get_run_time()
            if elapsed >= self.seconds:
                return None
            users = self.stages[min(int(elapsed // (self.seconds / len(self.stages))), len(self.stages) - 1)]
            return users, users
