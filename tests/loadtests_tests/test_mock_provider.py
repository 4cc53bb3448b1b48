"""The standalone mock provider, driven over real HTTP by the official openai / anthropic SDKs."""

import base64
import json
import struct
import threading
import time

import anthropic
import httpx
import openai
import pytest

from gateway.providers import mock_engine
from loadtests.mock_provider import MockProvider


@pytest.fixture(scope="module")
def mock():
    with MockProvider() as provider:
        yield provider


@pytest.fixture(autouse=True)
def _clean(mock):
    mock.reset()
    yield


@pytest.fixture
def oai(mock):
    with openai.OpenAI(base_url=mock.url + "/v1", api_key="sk-test-openai", max_retries=0, timeout=10) as c:
        yield c


@pytest.fixture
def claude(mock):
    with anthropic.Anthropic(base_url=mock.url, api_key="sk-ant-test", max_retries=0, timeout=10) as c:
        yield c


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
            "required": ["city"],
        },
    },
}


# ---------------------------------------------------------------------------------------------
# mock_engine (pure functions)
# ---------------------------------------------------------------------------------------------


def test_engine_is_deterministic_and_bounded():
    assert mock_engine.count_tokens("") == 0
    assert mock_engine.count_tokens("abcde") == 2
    assert mock_engine.reply_text("hello") == mock_engine.reply_text("hello")
    assert mock_engine.reply_text("hello") != mock_engine.reply_text("hello!")
    for limit in (1, 3, 7):
        assert 0 < mock_engine.count_tokens(mock_engine.reply_text("hello", limit)) <= limit
    text = mock_engine.reply_text("x")
    for n in (1, 3, 20, 1000):
        parts = mock_engine.split_chunks(text, n)
        assert "".join(parts) == text and all(parts) and len(parts) == min(n, len(text))
    vec = mock_engine.embedding_for("abc", 16)
    assert len(vec) == 16 and abs(sum(v * v for v in vec) - 1) < 1e-9
    assert vec == mock_engine.embedding_for("abc", 16)
    msgs = [{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url", "image_url": {}}]}]
    assert mock_engine.prompt_text(msgs) == "hi"
    call = mock_engine.tool_call_for([WEATHER_TOOL], msgs)
    assert call["function"] == {"name": "get_weather", "arguments": '{"city":"mock"}'}
    assert call == mock_engine.tool_call_for([WEATHER_TOOL], msgs)
    assert mock_engine.tool_call_for([WEATHER_TOOL], [*msgs, {"role": "tool", "content": "x"}]) is None


# ---------------------------------------------------------------------------------------------
# OpenAI
# ---------------------------------------------------------------------------------------------


def test_chat_non_stream(mock, oai):
    resp = oai.chat.completions.create(
        model="gpt-upstream", messages=[{"role": "user", "content": "Say hi"}], max_tokens=50
    )
    assert resp.object == "chat.completion"
    assert resp.model == "gpt-upstream"
    choice = resp.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content.startswith("Mock reply:")
    prompt = mock_engine.prompt_text([{"role": "user", "content": "Say hi"}])
    assert resp.usage.prompt_tokens == mock_engine.count_tokens(prompt)
    assert resp.usage.completion_tokens == mock_engine.count_tokens(choice.message.content)
    # deterministic
    again = oai.chat.completions.create(model="gpt-upstream", messages=[{"role": "user", "content": "Say hi"}])
    assert again.choices[0].message.content == choice.message.content


def test_chat_max_tokens_truncates(oai):
    resp = oai.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "Say hi"}], max_completion_tokens=3
    )
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage.completion_tokens <= 3


def test_chat_stream_with_usage(mock, oai):
    mock.configure(default={"chunks": 5})
    stream = oai.chat.completions.create(
        model="gpt-upstream",
        messages=[{"role": "user", "content": "Stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == mock_engine.reply_text(mock_engine.prompt_text([{"role": "user", "content": "Stream please"}]))
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) == 5
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == mock_engine.count_tokens(text)
    assert usage_chunk.usage.total_tokens == usage_chunk.usage.prompt_tokens + usage_chunk.usage.completion_tokens
    assert mock.stats()["completed_streams"] == 1


def test_chat_stream_without_usage_and_omit_usage(mock, oai):
    chunks = list(oai.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}], stream=True))
    assert all(c.usage is None for c in chunks)
    mock.configure(models={"m-nousage": {"omit_usage": True}})
    chunks = list(
        oai.chat.completions.create(
            model="m-nousage",
            messages=[{"role": "user", "content": "a"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None for c in chunks) and chunks[-1].choices
    resp = oai.chat.completions.create(model="m-nousage", messages=[{"role": "user", "content": "a"}])
    assert resp.usage is None


def test_tools_round_trip(mock, oai):
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    first = oai.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    assert first.choices[0].finish_reason == "tool_calls"
    call = first.choices[0].message.tool_calls[0]
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "mock"}

    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    second = oai.chat.completions.create(model="m", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert "sunny, 21C" in second.choices[0].message.content

    # streamed tool call
    stream = oai.chat.completions.create(model="m", messages=messages[:1], tools=[WEATHER_TOOL], stream=True)
    args = ""
    name = None
    finish = None
    for chunk in stream:
        for tc in chunk.choices[0].delta.tool_calls or []:
            name = name or tc.function.name
            args += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert (name, json.loads(args), finish) == ("get_weather", {"city": "mock"}, "tool_calls")


def test_embeddings(oai):
    resp = oai.embeddings.create(model="embed-upstream", input=["alpha", "beta"])
    assert [d.index for d in resp.data] == [0, 1]
    assert resp.data[0].embedding == pytest.approx(mock_engine.embedding_for("alpha"))
    assert resp.usage.prompt_tokens == 3  # ceil(5/4) + ceil(4/4)
    b64 = oai.embeddings.create(model="e", input="alpha", encoding_format="base64", dimensions=4)
    floats = struct.unpack("<4f", base64.b64decode(b64.data[0].embedding))
    assert floats == pytest.approx(mock_engine.embedding_for("alpha", 4), abs=1e-6)


def test_models_list(oai, claude):
    ids = [m.id for m in oai.models.list()]
    assert "mock-gpt" in ids
    assert "mock-claude" in [m.id for m in claude.models.list()]


# ---------------------------------------------------------------------------------------------
# Anthropic
# ---------------------------------------------------------------------------------------------


def test_anthropic_non_stream(mock, claude):
    msg = claude.messages.create(
        model="claude-upstream",
        max_tokens=100,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert msg.type == "message" and msg.role == "assistant"
    assert msg.stop_reason == "end_turn"
    assert msg.content[0].type == "text" and msg.content[0].text.startswith("Mock reply:")
    assert msg.usage.input_tokens == mock_engine.count_tokens("Be brief.\nHello")
    assert msg.usage.output_tokens == mock_engine.count_tokens(msg.content[0].text)
    req = mock.requests()[-1]
    assert req["path"] == "/v1/messages"
    assert req["auth"] in ("sk-ant-test", "Bearer sk-ant-test")  # x-api-key or Authorization
    assert req["headers"]["anthropic-version"]


def test_anthropic_stream(mock, claude):
    with claude.messages.stream(
        model="claude-upstream", max_tokens=100, messages=[{"role": "user", "content": "Hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.content[0].text == text
    assert text.startswith("Mock reply:")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == mock_engine.count_tokens(text)


def test_anthropic_tools(claude):
    tool = {
        "name": "lookup",
        "description": "Look up",
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
    }
    msg = claude.messages.create(
        model="c", max_tokens=100, tools=[tool], messages=[{"role": "user", "content": "find x"}]
    )
    assert msg.stop_reason == "tool_use"
    block = msg.content[0]
    assert (block.type, block.name, block.input) == ("tool_use", "lookup", {"q": "mock"})
    with claude.messages.stream(
        model="c", max_tokens=100, tools=[tool], messages=[{"role": "user", "content": "find x"}]
    ) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == {"q": "mock"}
    follow = claude.messages.create(
        model="c",
        max_tokens=100,
        tools=[tool],
        messages=[
            {"role": "user", "content": "find x"},
            {"role": "assistant", "content": [block.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "42"}]},
        ],
    )
    assert follow.stop_reason == "end_turn" and "42" in follow.content[0].text


# ---------------------------------------------------------------------------------------------
# Failure behaviours
# ---------------------------------------------------------------------------------------------


def test_fail500_model(mock, oai, claude):
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="gpt-fail500", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.InternalServerError):
        claude.messages.create(model="c-fail500", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_fail429_has_retry_after(mock):
    r = httpx.post(mock.url + "/v1/chat/completions", json={"model": "m-fail429", "messages": []})
    assert r.status_code == 429
    assert r.headers["retry-after"] == "1"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"


def test_fail_times_then_success(mock, oai):
    mock.configure(models={"flaky": {"status": 503, "fail_times": 2}})
    for _ in range(2):
        with pytest.raises(openai.InternalServerError) as exc:
            oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "x"}])
        assert exc.value.status_code == 503
    ok = oai.chat.completions.create(model="flaky", messages=[{"role": "user", "content": "x"}])
    assert ok.choices[0].message.content
    assert mock.stats()["injected_errors"] == 2


def test_config_endpoint_rejects_unknown_knob(mock):
    r = httpx.post(mock.url + "/_mock/config", json={"default": {"latencyms": 5}})
    assert r.status_code == 400
    r = httpx.post(mock.url + "/_mock/config", json={"default": {"error_rate": 1.0}})
    assert r.status_code == 200
    assert httpx.post(mock.url + "/v1/embeddings", json={"model": "e", "input": "x"}).status_code == 500


def test_reset_mid_stream_raises(mock, oai):
    stream = oai.chat.completions.create(model="gpt-reset", messages=[{"role": "user", "content": "x"}], stream=True)
    received = []
    with pytest.raises((httpx.HTTPError, openai.APIError)):
        for chunk in stream:
            received.append(chunk)
    assert 1 <= len(received) <= 4
    with pytest.raises(openai.APIConnectionError):
        oai.chat.completions.create(model="gpt-reset", messages=[{"role": "user", "content": "x"}])
    assert mock.stats()["resets"] == 2


def test_hang_times_out(mock):
    client = openai.OpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=0, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-hang", messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - started < 2
    client.close()
    mock.wait_for(lambda s: s["hanging"] == 0)


def test_slow_model_adds_latency(mock):
    mock.configure(models={"fast-slow": {"latency_ms": 100}})  # runtime config wins over the -slow convention
    started = time.monotonic()
    r = httpx.post(
        mock.url + "/v1/chat/completions",
        json={"model": "fast-slow", "messages": [{"role": "user", "content": "x"}]},
    )
    assert r.status_code == 200
    assert 0.1 <= time.monotonic() - started < 1.5


def test_requests_log_shows_body(mock, oai):
    oai.chat.completions.create(
        model="gpt-upstream", messages=[{"role": "user", "content": "my email is [REDACTED]"}], user="u1"
    )
    r = httpx.get(mock.url + "/_mock/requests")
    [entry] = r.json()
    assert entry["method"] == "POST" and entry["path"] == "/v1/chat/completions"
    assert entry["model"] == "gpt-upstream"
    assert entry["body"]["messages"] == [{"role": "user", "content": "my email is [REDACTED]"}]
    assert entry["headers"]["authorization"] == "Bearer sk-test-openai"
    assert entry["auth"] == "Bearer sk-test-openai"
    assert entry["status"] == 200
    assert mock.requests() == r.json()
    assert httpx.post(mock.url + "/_mock/reset").status_code == 200
    assert mock.requests() == []


def test_stats_count_active_stream_and_client_disconnect(mock, oai):
    mock.configure(models={"slowstream": {"chunk_delay_ms": 50, "chunks": 40}})
    stream = oai.chat.completions.create(model="slowstream", messages=[{"role": "user", "content": "x"}], stream=True)
    it = iter(stream)
    next(it)
    next(it)
    stats = mock.stats()
    assert stats["active_streams"] == 1
    assert stats["models"] == {"slowstream": 1}
    stream.close()
    stats = mock.wait_for(lambda s: s["client_disconnects"] == 1)
    assert stats["active_streams"] == 0
    assert stats["completed_streams"] == 0


def test_concurrent_streams_counted(mock):
    mock.configure(default={"chunk_delay_ms": 20, "chunks": 10})
    results = []

    def run():
        with openai.OpenAI(base_url=mock.url + "/v1", api_key="k", max_retries=0) as c:
            s = c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}], stream=True)
            results.append("".join(ch.choices[0].delta.content or "" for ch in s if ch.choices))

    threads = [threading.Thread(target=run) for _ in range(5)]
    for t in threads:
        t.start()
    mock.wait_for(lambda s: s["active_streams"] >= 2)
    for t in threads:
        t.join()
    assert len(results) == 5 and len(set(results)) == 1
    assert mock.stats()["completed_streams"] == 5
