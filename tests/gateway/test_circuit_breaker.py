import time

import openai
import pytest

from gateway.catalog_sync import catalog_sync
from tenants.services import api_key_create

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def breaker_gateway(live_server_factory):
    return live_server_factory(SENTINEL_BREAKER_FAILURES="2", SENTINEL_BREAKER_COOLDOWN="1", SENTINEL_RETRIES="0")


def test_failures_open_the_circuit_and_a_probe_closes_it(breaker_gateway, upstream, tenant, user):
    catalog_sync(
        data={
            "providers": [{"name": "mock-openai", "kind": "openai", "base_url": f"{upstream.url}/v1"}],
            "models": [
                {
                    "name": "breaker-test",
                    "routes": [{"provider": "mock-openai", "model": "breaker"}],
                    "price": {"input": 1, "output": 1},
                }
            ],
        }
    )
    _, token = api_key_create(tenant=tenant, actor=user, name="breaker")
    client = openai.OpenAI(base_url=f"{breaker_gateway.url}/v1", api_key=token, max_retries=0)
    upstream.configure(models={"breaker": {"status": 500}})
    messages = [{"role": "user", "content": "hi"}]
    for _ in range(2):
        with pytest.raises(openai.APIStatusError) as exc:
            client.chat.completions.create(model="breaker-test", messages=messages)
        assert exc.value.status_code == 502
    seen = upstream.stats()["models"]["breaker"]
    with pytest.raises(openai.APIStatusError) as exc:
        client.chat.completions.create(model="breaker-test", messages=messages)
    assert exc.value.status_code == 503 and exc.value.body["code"] == "circuit_open"
    assert upstream.stats()["models"]["breaker"] == seen  # open: the upstream was not called
    upstream.reset()
    time.sleep(1.2)
    assert client.chat.completions.create(model="breaker-test", messages=messages).choices[0].message.content
    assert client.chat.completions.create(model="breaker-test", messages=messages).choices[0].message.content
