import anthropic
import httpx
import pytest

from tests.gateway.conftest import usage_events

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_messages_non_stream_for_any_model(aclient, model):
    message = aclient.messages.create(
        model=model, max_tokens=200, system="Be brief.", messages=[{"role": "user", "content": "Say hello"}]
    )
    assert message.content[0].type == "text" and message.content[0].text.startswith("Mock reply")
    assert message.stop_reason == "end_turn" and message.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_messages_stream_for_any_model(aclient, model):
    with aclient.messages.stream(
        model=model, max_tokens=200, messages=[{"role": "user", "content": "Say hello"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text.startswith("Mock reply") and final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["claude-test", "gpt-test"])
def test_messages_tools_round_trip(aclient, model):
    first = aclient.messages.create(
        model=model, max_tokens=200, tools=TOOLS, messages=[{"role": "user", "content": "Weather in Paris?"}]
    )
    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert tool_use.name == "get_weather" and tool_use.input == {"city": "mock"}
    second = aclient.messages.create(
        model=model,
        max_tokens=200,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "rainy"}]},
        ],
    )
    assert "rainy" in second.content[0].text


def test_x_api_key_header_authenticates(gateway, api_key):
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        headers={"x-api-key": api_key.token},
        json={"model": "claude-test", "max_tokens": 50, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200
    [event] = usage_events(response.headers["x-request-id"])
    assert event.endpoint == "messages" and event.model == "claude-test"


def test_errors_use_the_anthropic_envelope(gateway, api_key, aclient):
    with pytest.raises(anthropic.BadRequestError) as exc:
        aclient.messages.create(model="claude-test", max_tokens=10, messages=[])
    assert exc.value.body["type"] == "error" and exc.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        aclient.messages.create(model="ghost", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    bad = anthropic.Anthropic(base_url=gateway.url, api_key="sk-sntl-bad", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as exc:
        bad.messages.create(model="claude-test", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["error"]["type"] == "authentication_error"
