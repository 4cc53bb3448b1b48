import json
import logging
import signal

import httpx
import openai
import pytest

from sentinel_site.logging import JsonFormatter

pytestmark = pytest.mark.django_db(transaction=True)


def test_json_logs_carry_the_request_id_tenant_and_key_never_a_secret(serve, api_token, tenant):
    server = serve(SENTINEL_LOG_FORMAT="json", DJANGO_LOG_LEVEL="info")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=api_token, max_retries=0, timeout=20)
    reply = client.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "log me"}]
    )
    ok_id = reply.headers["x-request-id"]
    stream = client.chat.completions.with_raw_response.create(
        model="gpt-test", stream=True, messages=[{"role": "user", "content": "stream me"}]
    )
    stream_id = stream.headers["x-request-id"]
    assert "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    forged = api_token[:-6] + "abcdef"
    denied = httpx.get(f"{server.url}/v1/models", headers={"authorization": f"Bearer {forged}"}, timeout=10)
    assert denied.status_code == 401
    in_query = httpx.get(f"{server.url}/v1/models", params={"api_key": api_token}, timeout=10)
    assert in_query.status_code == 401
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(timeout=30) == 0

    lines = [line for line in server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= record.keys() for record in records)
    assert not [line for line in lines if "sk-sntl-" in line]
    # ...and not because the formatter's last-resort scrubber caught one: none reached it.
    assert not [line for line in lines if "[REDACTED_API_KEY]" in line]

    access = {record.get("request_id"): record for record in records if record["logger"] == "sentinel.access"}
    assert access[ok_id]["status"] == 200 and access[ok_id]["path"] == "/v1/chat/completions"
    public_id = api_token.split("-")[2]
    assert access[ok_id]["tenant"] == tenant.slug and access[ok_id]["key"] == public_id
    assert "tenant" not in access[denied.headers["x-request-id"]]  # an unknown key names no tenant
    assert access[stream_id]["status"] == 200 and access[stream_id]["bytes"] > 0
    assert access[denied.headers["x-request-id"]]["status"] == 401
    assert access[in_query.headers["x-request-id"]]["path"] == "/v1/models"  # no query string
    assert any(record["logger"] == "sentinel.serve" and record["msg"] == "shutdown: done" for record in records)


def test_json_formatter_scrubs_a_key_that_reaches_a_log_line():
    record = logging.LogRecord(
        "sentinel.test", logging.ERROR, __file__, 1, "bad token %s", ("sk-sntl-AbC123-secretpart99",), None
    )
    record.detail = "Bearer sk-sntl-AbC123-secretpart99"
    line = JsonFormatter().format(record)
    assert "sk-sntl-" not in line and "secretpart" not in line
    assert json.loads(line)["msg"] == "bad token [REDACTED_API_KEY]"
