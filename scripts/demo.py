"""Walk a running Sentinel through its main features, printing each step.

    python scripts/demo.py --base-url http://127.0.0.1:8000 --key sk-sntl-... [--audit-key sk-sntl-...]

Steps: a completion, a stream, a PII redaction, the cost (``GET /v1/usage``) and the audit trail
(``GET /v1/audit``). Works against ``make run`` (the demo tenant ``acme`` has ``pii=redact`` and the
built-in mock models) with one of the keys ``seed_demo`` prints. Needs only ``openai`` and ``httpx``.

The audit trail needs a key with the ``audit:read`` scope (and the cost report covers the whole
tenant only with ``usage:read``); mint one with
``python manage.py create_api_key acme --name demo-audit --scopes usage:read,audit:read``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

import httpx
import openai


def step(number: int, title: str) -> None:
    print(f"\n== {number}. {title}")


def show(label: str, value: object) -> None:
    print(f"   {label:<22} {value}")


def completion(client: openai.OpenAI, model: str) -> str:
    step(1, f"A chat completion ({model})")
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "In one sentence: what is an LLM gateway?"}]
    )
    reply = raw.parse()
    show("reply", reply.choices[0].message.content)
    show("tokens", f"{reply.usage.prompt_tokens} prompt + {reply.usage.completion_tokens} completion")
    for header in ("x-request-id", "x-sentinel-route", "x-sentinel-cache", "x-ratelimit-remaining-requests"):
        if raw.headers.get(header):
            show(header, raw.headers[header])
    return raw.headers["x-request-id"]


def stream(client: openai.OpenAI, model: str) -> None:
    step(2, "A streamed completion (server-sent events)")
    started = time.perf_counter()
    first = None
    pieces = 0
    print("   ", end="", flush=True)
    for chunk in client.chat.completions.create(
        model=model,
        stream=True,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Stream a short answer, please."}],
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            first = first or time.perf_counter() - started
            pieces += 1
            print(chunk.choices[0].delta.content, end="", flush=True)
        elif chunk.usage:
            print()
            show(
                "usage (last chunk)", f"{chunk.usage.prompt_tokens} prompt + {chunk.usage.completion_tokens} completion"
            )
    show("chunks", pieces)
    show("time to first token", f"{(first or 0) * 1000:.0f} ms")


def redaction(client: openai.OpenAI, model: str) -> None:
    step(3, "PII redaction (the tenant's guardrails: pii=redact)")
    print(
        "   With pii=redact Sentinel replaces personal data in the prompt by a placeholder before the\n"
        "   provider sees it. The gateway never echoes the prompt back, so the effect shows in what the\n"
        "   provider answers: the built-in mock model's reply is a hash of the prompt it received, so\n"
        "   the prompt with an email address and the same prompt with [REDACTED_EMAIL] typed in by hand\n"
        "   get the same reply if, and only if, the provider saw the redacted text. (With a real model,\n"
        "   ask it to repeat the address: it answers with the placeholder.) The detection is also in\n"
        "   the request's usage record (guardrail flags) and in the audit trail (step 5)."
    )
    nonce = uuid.uuid4().hex[:8]
    with_pii = f"Contact jane.doe@example.com about invoice {nonce}."
    placeholder = f"Contact [REDACTED_EMAIL] about invoice {nonce}."
    headers = {"x-sentinel-cache": "bypass"}
    a = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": with_pii}], extra_headers=headers
    )
    b = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": placeholder}], extra_headers=headers
    )
    show("prompt sent", with_pii)
    show("reply", a.choices[0].message.content)
    show("reply to placeholder", b.choices[0].message.content)
    same = a.choices[0].message.content == b.choices[0].message.content
    show("provider saw", "the redacted prompt" if same else "the original prompt (is pii=redact set?)")


def usage(http: httpx.Client) -> None:
    step(4, "Cost: GET /v1/usage?group_by=model")
    response = http.get("/v1/usage", params={"group_by": "model"})
    if response.status_code != 200:
        show("status", f"{response.status_code} {response.text[:200]}")
        return
    report = response.json()
    show("scope", f"{report['scope']} ({report['start']} .. {report['end']}, {report['timezone']})")
    for row in report["data"][:8]:
        show(row["model"] or "-", f"{row['requests']:>6} requests  {row['total_tokens']:>9} tokens  ${row['cost_usd']}")
    total = report["total"]
    show("total", f"{total['requests']} requests, ${total['cost_usd']} ({total['cost_micros']} micro-dollars)")
    print("   Usage reaches the ledger within seconds (the spool, drained by Celery every 2 s); this report")
    print("   reads the daily rollups, rebuilt from the ledger every 5 minutes, so the requests just made")
    print("   appear after the next rollup (sentinel_cost_usd_total on /metrics counts them at once).")


def audit(http: httpx.Client, request_id: str) -> None:
    step(5, "Audit trail: GET /v1/audit")
    response = http.get("/v1/audit", params={"limit": 10})
    if response.status_code == 403:
        show("status", "403: this key lacks the audit:read scope")
        print("   Mint one: python manage.py create_api_key acme --name demo-audit --scopes usage:read,audit:read")
        print("   and pass it with --audit-key.")
        return
    response.raise_for_status()
    events = response.json()["data"]
    for event in events:
        print(
            f"   #{event['seq']:<5} {event['created_at'][:19]}  {event['action']:<24} "
            f"{event['actor_label'][:24]:<24} {json.dumps(event['metadata'])[:60]}"
        )
    if events:
        show("chain head hash", events[0]["hash"])
    show("first request's id", f"{request_id} (search the JSON logs for it)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000", help="Sentinel's address")
    parser.add_argument("--key", required=True, help="a Sentinel API key (sk-sntl-...)")
    parser.add_argument("--audit-key", help="a key with the audit:read scope (default: --key)")
    parser.add_argument("--model", default="mock-gpt", help="chat model (default: mock-gpt)")
    args = parser.parse_args()
    base = args.base_url.rstrip("/")
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=args.key, max_retries=0, timeout=60)
    print(f"Sentinel at {base}")
    try:
        request_id = completion(client, args.model)
        stream(client, args.model)
        redaction(client, args.model)
    except openai.APIStatusError as exc:
        print(f"\n   the gateway answered {exc.status_code}: {exc.message}")
        return 1
    except openai.APIConnectionError as exc:
        print(f"\n   cannot reach {base}: {exc}")
        return 1
    reader = args.audit_key or args.key
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {reader}"}, timeout=30) as http:
        usage(http)
        audit(http, request_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
