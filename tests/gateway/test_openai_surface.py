import json
import socket
import threading
import time

import httpx
import openai
import pytest

from tests.gateway.conftest import usage_events

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello"}]


def test_non_stream_completion_through_the_sdk(client, upstream):
    raw = client.chat.completions.with_raw_response.create(model="gpt-test", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content.startswith("Mock reply")
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    request_id = raw.headers["x-request-id"]
    received = upstream.requests()[-1]
    assert received["body"]["model"] == "gpt-test" and received["body"]["messages"] == HELLO
    assert "sk-sntl" not in json.dumps(received["headers"])  # the client's key never reaches the provider
    [event] = usage_events(request_id)
    assert event.prompt_tokens == completion.usage.prompt_tokens
    assert event.completion_tokens == completion.usage.completion_tokens
    # 1 USD/1M input, 2 USD/1M output: micro-dollars = tokens * price
    assert event.cost_micros == completion.usage.prompt_tokens * 1 + completion.usage.completion_tokens * 2
    assert event.status == "ok" and not event.estimated and event.route == "mock-openai/gpt-test"


def test_stream_with_include_usage_ends_with_a_usage_chunk(client):
    chunks = list(
        client.chat.completions.create(
            model="gpt-test", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Mock reply")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0


def test_stream_without_include_usage_sends_no_usage_chunk(client):
    chunks = list(client.chat.completions.create(model="gpt-test", messages=HELLO, stream=True))
    assert all(c.choices for c in chunks)


def test_first_chunk_arrives_before_the_upstream_finishes(client, upstream):
    upstream.configure(models={"gpt-test": {"chunks": 5, "chunk_delay_ms": 300}})
    started = time.monotonic()
    stream = client.chat.completions.create(model="gpt-test", messages=HELLO, stream=True)
    first = next(iter(stream))
    first_at = time.monotonic() - started
    assert upstream.stats()["active_streams"] == 1  # the upstream is still streaming
    list(stream)
    total = time.monotonic() - started
    assert first is not None and first_at < total - 0.9


def test_tools_round_trip(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    first = client.chat.completions.create(
        model="gpt-test", messages=[{"role": "user", "content": "Weather?"}], tools=tools
    )
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    second = client.chat.completions.create(
        model="gpt-test",
        tools=tools,
        messages=[
            {"role": "user", "content": "Weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
    )
    assert "sunny" in second.choices[0].message.content


def test_tools_through_an_anthropic_upstream(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
            },
        }
    ]
    first = client.chat.completions.create(
        model="claude-test", messages=[{"role": "user", "content": "Find it"}], tools=tools
    )
    call = first.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "mock"}
    stream = list(
        client.chat.completions.create(
            model="claude-test", stream=True, tools=tools, messages=[{"role": "user", "content": "Find it"}]
        )
    )
    assert any(c.choices and c.choices[0].delta.tool_calls for c in stream)


def test_unknown_fields_are_passed_through(client, upstream):
    client.chat.completions.create(
        model="gpt-test",
        messages=HELLO,
        seed=7,
        temperature=0.2,
        extra_body={"logit_bias": {"42": 1}, "reasoning_effort": "low"},
    )
    body = upstream.requests()[-1]["body"]
    assert body["seed"] == 7 and body["logit_bias"] == {"42": 1} and body["reasoning_effort"] == "low"


def test_embeddings_and_models(client, api_key):
    result = client.embeddings.create(model="embed-test", input=["a", "b"])
    assert len(result.data) == 2 and result.usage.prompt_tokens > 0
    ids = {m.id for m in client.models.list()}
    assert {"gpt-test", "claude-test", "embed-test"} <= ids


def test_models_lists_only_what_the_key_may_use(gateway, api_key):
    api_key.allowed_models = ["gpt-test"]
    api_key.save(update_fields=["allowed_models"])
    from tenants.keycache import publish_invalidation

    publish_invalidation(api_key.public_id)
    time.sleep(0.3)
    limited = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=api_key.token, max_retries=0)
    assert [m.id for m in limited.models.list()] == ["gpt-test"]
    with pytest.raises(openai.PermissionDeniedError) as exc:
        limited.chat.completions.create(model="claude-test", messages=HELLO)
    assert exc.value.body["code"] == "model_not_allowed" and exc.value.body["param"] == "model"


@pytest.mark.parametrize(
    ("kwargs", "error", "param"),
    [
        ({"model": "nope", "messages": HELLO}, openai.NotFoundError, "model"),
        ({"model": "gpt-test", "messages": []}, openai.BadRequestError, "messages"),
        (
            {"model": "gpt-test", "messages": [{"role": "wizard", "content": "x"}]},
            openai.BadRequestError,
            "messages.0.role",
        ),
        ({"model": "gpt-test", "messages": HELLO, "temperature": 9}, openai.BadRequestError, "temperature"),
    ],
)
def test_errors_map_to_sdk_exceptions_with_the_envelope(client, kwargs, error, param):
    with pytest.raises(error) as exc:
        client.chat.completions.create(**kwargs)
    body = exc.value.body
    assert set(body) == {"message", "type", "param", "code"} and body["param"] == param
    assert exc.value.response.headers["x-request-id"]


def test_bad_and_missing_keys_are_401(gateway, api_key):
    for token in ["sk-sntl-wrong", api_key.token[:-1] + ("A" if api_key.token[-1] != "A" else "B")]:
        bad = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=token, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as exc:
            bad.models.list()
        assert token not in json.dumps(exc.value.body)
    response = httpx.get(f"{gateway.url}/v1/models")
    assert response.status_code == 401 and response.json()["error"]["code"] == "missing_api_key"


def test_unpriced_model_is_refused_not_billed_zero(client):
    with pytest.raises(openai.PermissionDeniedError) as exc:
        client.chat.completions.create(model="unpriced-test", messages=HELLO)
    assert exc.value.body["code"] == "model_not_priced"


def test_a_model_whose_provider_has_no_credentials_is_not_listed_nor_called(client, upstream):
    assert "unkeyed-test" not in {m.id for m in client.models.list()}
    for _ in range(6):  # more than the breaker threshold: a missing key never reads as "circuit open"
        with pytest.raises(openai.InternalServerError) as exc:
            client.chat.completions.create(model="unkeyed-test", messages=HELLO)
        assert exc.value.status_code == 503 and exc.value.body["code"] == "provider_not_configured"
        assert "unkeyed" in exc.value.body["message"]
    assert upstream.requests() == []


def test_upstream_500_falls_back_to_the_next_route(client, upstream):
    raw = client.chat.completions.with_raw_response.create(model="flaky-test", messages=HELLO)
    assert raw.parse().choices[0].message.content
    assert raw.headers["x-sentinel-route"] == "mock-backup/flaky-backup"
    [event] = usage_events(raw.headers["x-request-id"])
    assert event.attempts >= 2 and event.route == "mock-backup/flaky-backup"
    hits = upstream.stats()["models"]
    assert hits.get("flaky-fail500", 0) >= 1 and hits.get("flaky-backup") == 1


def test_hung_upstream_times_out_with_504(client):
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="hang-test", messages=HELLO)
    assert exc.value.status_code == 504 and exc.value.body["code"] == "upstream_timeout"
    assert time.monotonic() - started < 10


def test_reset_mid_stream_ends_with_an_error_event_and_one_usage_record(gateway, api_key):
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        timeout=20,
        headers={"authorization": f"Bearer {api_key.token}"},
        json={"model": "reset-test", "messages": HELLO, "stream": True},
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        frames = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert '"upstream_error"' in frames[-1] and frames[-1] != "data: [DONE]"
    [event] = usage_events(request_id)
    assert event.status == "error" and event.estimated and event.completion_tokens > 0


def test_client_disconnect_closes_upstream_and_records_one_usage(gateway, api_key, upstream):
    upstream.configure(models={"gpt-test": {"chunks": 50, "chunk_delay_ms": 100}})
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        timeout=20,
        headers={"authorization": f"Bearer {api_key.token}"},
        json={"model": "gpt-test", "messages": HELLO, "stream": True},
    ) as response:
        request_id = response.headers["x-request-id"]
        lines = response.iter_lines()
        for _ in range(3):
            next(lines)
    upstream.wait_for(lambda s: s["client_disconnects"] >= 1 and s["active_streams"] == 0, timeout=5)
    events = usage_events(request_id)
    assert len(events) == 1
    assert events[0].status == "client_closed" and events[0].estimated
    time.sleep(0.5)
    assert len(usage_events(request_id, timeout=0)) == 1


def test_a_body_naming_another_upstream_never_reaches_it(gateway, api_key):
    canary = socket.socket()
    canary.bind(("127.0.0.1", 0))
    canary.listen()
    canary.settimeout(0.2)
    port = canary.getsockname()[1]
    connections = []

    def watch():
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            try:
                connections.append(canary.accept())
            except TimeoutError:
                continue

    watcher = threading.Thread(target=watch)
    watcher.start()
    url = f"http://127.0.0.1:{port}/v1"
    for extra in ({"api_base": url}, {"base_url": url}, {"api_key": "sk-evil", "api_base": url}):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            timeout=10,
            headers={"authorization": f"Bearer {api_key.token}", "x-api-base": url},
            json={"model": "gpt-test", "messages": HELLO, **extra},
        )
        assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_parameter"
    watcher.join()
    canary.close()
    assert connections == []


def test_request_id_is_echoed_and_body_size_is_limited(gateway, api_key):
    headers = {"authorization": f"Bearer {api_key.token}", "x-request-id": "client-req-12345"}
    response = httpx.get(f"{gateway.url}/v1/models", headers=headers)
    assert response.headers["x-request-id"] == "client-req-12345"
    huge = {"model": "gpt-test", "messages": [{"role": "user", "content": "x" * (5 * 1024 * 1024)}]}
    response = httpx.post(f"{gateway.url}/v1/chat/completions", headers=headers, json=huge, timeout=30)
    assert response.status_code == 413 and response.json()["error"]["type"] == "request_too_large"


def test_no_cors_headers_by_default(gateway, api_key):
    response = httpx.options(
        f"{gateway.url}/v1/chat/completions",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_health_endpoints(gateway):
    assert httpx.get(f"{gateway.url}/health/live").json() == {"status": "ok"}
    ready = httpx.get(f"{gateway.url}/health/ready").json()
    assert ready["checks"] == {"database": "ok", "redis": "ok"}
