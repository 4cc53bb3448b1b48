"""Deterministic fake-LLM logic shared by the in-process "mock" provider and the HTTP mock.

Pure Python: no Django and no third-party imports, so ``loadtests/mock_provider.py`` (a standalone
aiohttp server) and the gateway's built-in mock provider produce byte-for-byte the same replies.

Everything here is deterministic given the request (apart from generated ids and ``created``
timestamps, which callers may pass in): the same prompt always yields the same reply text, the
same tool call and the same token counts.

Wire formats follow the public OpenAI Chat Completions / Embeddings / Models APIs and the
Anthropic Messages API closely enough for the official ``openai`` and ``anthropic`` SDKs to parse
them (including streaming).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
import time
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_MODELS",
    "SSE_DONE",
    "ChatPlan",
    "anthropic_count_tokens",
    "anthropic_error",
    "anthropic_message",
    "anthropic_models_list",
    "anthropic_prompt_text",
    "anthropic_stream_events",
    "chat_completion",
    "chat_completion_chunks",
    "count_tokens",
    "embedding_for",
    "embeddings_response",
    "last_tool_result",
    "models_list",
    "new_id",
    "openai_error",
    "openai_usage",
    "plan_anthropic",
    "plan_chat",
    "prompt_text",
    "reply_text",
    "split_chunks",
    "sse_data",
    "sse_event",
    "stream_include_usage",
    "tool_call_for",
]

DEFAULT_MODELS = ("mock-gpt", "mock-gpt-mini", "mock-embed", "mock-claude")
DEFAULT_REPLY_WORDS = 24
MODELS_CREATED = 1_700_000_000

_VOCAB = (
    "alpha", "bravo", "cobalt", "delta", "ember", "falcon", "granite", "harbor",
    "indigo", "juniper", "kestrel", "lantern", "meadow", "nimbus", "orchid", "pebble",
    "quartz", "river", "saffron", "timber", "umber", "velvet", "willow", "xenon",
    "yarrow", "zephyr", "amber", "birch", "cedar", "dune", "echo", "fjord",
    "glacier", "heron", "island", "jasper", "kelp", "lotus", "maple", "nectar",
    "ocean", "prairie", "quill", "ridge", "summit", "tundra", "upland", "valley",
    "wander", "yonder", "zenith", "aurora", "beacon", "canyon", "drift", "orbit",
    "forest", "garden", "horizon", "ivory", "jade", "koala", "lagoon", "mosaic",
)  # fmt: skip
assert len(_VOCAB) == 64

_JSON_SEPARATORS = (",", ":")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=_JSON_SEPARATORS, ensure_ascii=False)


# --------------------------------------------------------------------------------------------
# Text helpers
# --------------------------------------------------------------------------------------------


def count_tokens(text: str) -> int:
    """Cheap token estimate: one token per 4 characters (rounded up), 0 for empty text."""
    if not text:
        return 0
    return max(1, math.ceil(len(text) / 4))


def _content_texts(content: Any) -> list[str]:
    """Text pieces of an OpenAI or Anthropic message ``content`` (string or list of parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for part in content:
            if isinstance(part, str):
                out.append(part)
                continue
            if not isinstance(part, dict):
                continue
            kind = part.get("type")
            if kind in ("text", "input_text", "output_text"):
                text = part.get("text")
                if isinstance(text, str):
                    out.append(text)
            elif kind == "tool_result":
                out.extend(_content_texts(part.get("content")))
            elif kind == "tool_use":
                out.append(part.get("name", "") + " " + _dumps(part.get("input", {})))
            # image / image_url / input_audio / document parts are ignored.
    return out


def prompt_text(messages: list[dict]) -> str:
    """Concatenate the text of OpenAI- (or Anthropic-) style messages, tool calls and tool results.

    String contents and ``{"type": "text", "text": ...}`` parts are used; image parts are ignored.
    ``role: tool`` messages (OpenAI) and ``tool_result`` blocks (Anthropic) contribute their text,
    and assistant tool calls contribute their name and arguments.
    """
    pieces: list[str] = []
    for msg in messages or ():
        if not isinstance(msg, dict):
            continue
        pieces.extend(_content_texts(msg.get("content")))
        for call in msg.get("tool_calls") or ():
            fn = (call.get("function") or {}) if isinstance(call, dict) else {}
            pieces.append(f"{fn.get('name', '')} {fn.get('arguments', '')}")
    return "\n".join(p for p in pieces if p)


def anthropic_prompt_text(body: dict) -> str:
    """Prompt text of an Anthropic Messages request: ``system`` (string or blocks) + messages."""
    system = _content_texts(body.get("system"))
    rest = prompt_text(body.get("messages") or [])
    return "\n".join([*system, rest] if rest else system)


def _truncate(text: str, max_tokens: int | None) -> str:
    if max_tokens is None or count_tokens(text) <= max_tokens:
        return text
    cut = text[: max(1, max_tokens) * 4]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    return cut


def reply_text(prompt: str, max_tokens: int | None = None, *, tool_result: str | None = None) -> str:
    """Deterministic reply for ``prompt``: ``"Mock reply: "`` + 24 words picked by sha256(prompt).

    The result is at most ``max_tokens`` tokens (by :func:`count_tokens`); ``None`` = no limit.
    With ``tool_result`` the reply quotes (the start of) the tool result first.
    """
    digest = hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).digest()
    words = " ".join(_VOCAB[b & 63] for b in digest[:DEFAULT_REPLY_WORDS])
    if tool_result is not None:
        quoted = " ".join(tool_result.split())[:200]
        text = f"Mock reply: the tool returned {quoted}. {words}."
    else:
        text = f"Mock reply: {words}."
    return _truncate(text, max_tokens)


def split_chunks(text: str, n: int) -> list[str]:
    """Split ``text`` into ``n`` roughly equal non-empty pieces (fewer if text is shorter)."""
    if not text:
        return []
    n = max(1, min(int(n), len(text)))
    size, extra = divmod(len(text), n)
    out: list[str] = []
    pos = 0
    for i in range(n):
        end = pos + size + (1 if i < extra else 0)
        out.append(text[pos:end])
        pos = end
    return out


# --------------------------------------------------------------------------------------------
# Tools
# --------------------------------------------------------------------------------------------


def _is_plain_user_turn(msg: Any) -> bool:
    if not isinstance(msg, dict) or msg.get("role") != "user":
        return False
    content = msg.get("content")
    if isinstance(content, list):
        return not any(isinstance(p, dict) and p.get("type") == "tool_result" for p in content)
    return True


def last_tool_result(messages: list[dict]) -> str | None:
    """Text of the tool result(s) in the last message, or None if it is not a tool result."""
    if not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict):
        return None
    if last.get("role") == "tool":
        return "\n".join(_content_texts(last.get("content")))
    content = last.get("content")
    if last.get("role") == "user" and isinstance(content, list):
        results = [p for p in content if isinstance(p, dict) and p.get("type") == "tool_result"]
        if results:
            return "\n".join(t for p in results for t in _content_texts(p.get("content")))
    return None


def _sample_value(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return "mock"
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "integer" or kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return _fill_required(schema)
    return "mock"


def _fill_required(schema: Any) -> dict:
    if not isinstance(schema, dict):
        return {}
    props = schema.get("properties") or {}
    return {key: _sample_value(props.get(key)) for key in schema.get("required") or ()}


def _tool_spec(tool: Any) -> tuple[str, dict] | None:
    """(name, JSON schema) of an OpenAI ``{"type":"function","function":{...}}`` or Anthropic tool."""
    if not isinstance(tool, dict):
        return None
    fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
    name = fn.get("name")
    if not isinstance(name, str) or not name:
        return None
    schema = fn.get("parameters") or fn.get("input_schema") or {}
    return name, schema


def tool_call_for(tools: list[dict] | None, messages: list[dict]) -> dict | None:
    """Deterministic OpenAI-shaped tool call for the first tool, or None.

    A call is made only when tools are given and the last message is a plain user turn; after a
    tool result (``role: tool`` or Anthropic ``tool_result`` blocks) the model answers with text.
    Required parameters are filled with ``"mock"`` (strings) or a type-appropriate sample value.
    """
    if not tools or not messages or not _is_plain_user_turn(messages[-1]):
        return None
    spec = next((s for s in map(_tool_spec, tools) if s is not None), None)
    if spec is None:
        return None
    name, schema = spec
    arguments = _dumps(_fill_required(schema))
    digest = hashlib.sha256((name + "\x00" + prompt_text(messages)).encode("utf-8", "surrogatepass"))
    return {
        "id": "call_" + digest.hexdigest()[:24],
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def embedding_for(text: str, dims: int = 8) -> list[float]:
    """Deterministic unit vector of ``dims`` floats derived from sha256(text)."""
    dims = max(1, int(dims))
    raw: list[float] = []
    counter = 0
    encoded = text.encode("utf-8", "surrogatepass")
    while len(raw) < dims:
        digest = hashlib.sha256(counter.to_bytes(4, "little") + encoded).digest()
        raw.extend(v / 2147483648.0 - 1.0 for v in struct.unpack("<8I", digest))
        counter += 1
    del raw[dims:]
    norm = math.sqrt(sum(v * v for v in raw))
    if norm == 0.0:
        return [1.0] + [0.0] * (dims - 1)
    return [v / norm for v in raw]


# --------------------------------------------------------------------------------------------
# Request planning (shared by both wire formats)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChatPlan:
    """What the fake model answers: either ``text`` or ``tool_call`` (OpenAI-shaped)."""

    model: str
    text: str | None
    tool_call: dict | None
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # OpenAI vocabulary: "stop" | "length" | "tool_calls"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def anthropic_stop_reason(self) -> str:
        return {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[self.finish_reason]


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _plan(model: str, prompt: str, messages: list, tools: Any, max_tokens: int | None) -> ChatPlan:
    prompt_tokens = count_tokens(prompt)
    call = tool_call_for(tools, messages) if tools else None
    if call is not None:
        fn = call["function"]
        return ChatPlan(
            model=model,
            text=None,
            tool_call=call,
            prompt_tokens=prompt_tokens,
            completion_tokens=count_tokens(fn["name"] + fn["arguments"]),
            finish_reason="tool_calls",
        )
    result = last_tool_result(messages)
    full = reply_text(prompt, None, tool_result=result)
    text = _truncate(full, max_tokens)
    return ChatPlan(
        model=model,
        text=text,
        tool_call=None,
        prompt_tokens=prompt_tokens,
        completion_tokens=count_tokens(text),
        finish_reason="length" if text != full else "stop",
    )


def plan_chat(body: dict) -> ChatPlan:
    """Plan the answer to an OpenAI chat.completions request body."""
    messages = body.get("messages") or []
    tools = body.get("tools")
    if body.get("tool_choice") == "none":
        tools = None
    max_tokens = _int_or_none(body.get("max_completion_tokens"))
    if max_tokens is None:
        max_tokens = _int_or_none(body.get("max_tokens"))
    return _plan(str(body.get("model") or "mock"), prompt_text(messages), messages, tools, max_tokens)


def plan_anthropic(body: dict) -> ChatPlan:
    """Plan the answer to an Anthropic Messages request body."""
    messages = body.get("messages") or []
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        tools = None
    max_tokens = _int_or_none(body.get("max_tokens"))
    return _plan(str(body.get("model") or "mock"), anthropic_prompt_text(body), messages, tools, max_tokens)


def new_id(prefix: str) -> str:
    """Random id such as ``chatcmpl-<24 hex>`` / ``msg_<24 hex>``."""
    return prefix + uuid.uuid4().hex[:24]


# --------------------------------------------------------------------------------------------
# OpenAI wire format
# --------------------------------------------------------------------------------------------


def openai_usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    body: dict,
    *,
    completion_id: str | None = None,
    created: int | None = None,
    include_usage: bool = True,
    plan: ChatPlan | None = None,
) -> dict:
    """Non-streaming ``chat.completion`` object for an OpenAI request body."""
    plan = plan or plan_chat(body)
    message: dict[str, Any] = {"role": "assistant", "content": plan.text, "refusal": None}
    if plan.tool_call is not None:
        message["tool_calls"] = [plan.tool_call]
    out: dict[str, Any] = {
        "id": completion_id or new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()) if created is None else created,
        "model": plan.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": plan.finish_reason}],
    }
    if include_usage:
        out["usage"] = openai_usage(plan.prompt_tokens, plan.completion_tokens)
    return out


def stream_include_usage(body: dict) -> bool:
    opts = body.get("stream_options")
    return bool(isinstance(opts, dict) and opts.get("include_usage"))


def chat_completion_chunks(
    body: dict,
    *,
    chunks: int = 20,
    include_usage: bool | None = None,
    completion_id: str | None = None,
    created: int | None = None,
    plan: ChatPlan | None = None,
) -> list[dict]:
    """The ``chat.completion.chunk`` objects of a streamed answer, in order.

    First a role chunk, then ``chunks`` content (or tool-call argument) chunks, then a chunk with
    ``finish_reason``; with ``include_usage`` (default: the request's
    ``stream_options.include_usage``) every chunk carries ``"usage": null`` and a final chunk with
    empty ``choices`` carries the usage. The caller adds the ``data: [DONE]`` terminator.
    """
    plan = plan or plan_chat(body)
    if include_usage is None:
        include_usage = stream_include_usage(body)
    cid = completion_id or new_id("chatcmpl-")
    ts = int(time.time()) if created is None else created

    def chunk(delta: dict, finish_reason: str | None = None) -> dict:
        out: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": ts,
            "model": plan.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if include_usage:
            out["usage"] = None
        return out

    out: list[dict] = []
    if plan.tool_call is not None:
        call = plan.tool_call
        out.append(
            chunk(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ],
                }
            )
        )
        for piece in split_chunks(call["function"]["arguments"], chunks):
            out.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    else:
        out.append(chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in split_chunks(plan.text or "", chunks):
            out.append(chunk({"content": piece}))
    out.append(chunk({}, plan.finish_reason))
    if include_usage:
        out.append(
            {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": ts,
                "model": plan.model,
                "choices": [],
                "usage": openai_usage(plan.prompt_tokens, plan.completion_tokens),
            }
        )
    return out


def _embedding_inputs(value: Any) -> list[tuple[str, int]]:
    """(text, token count) per input; accepts str, [str], [int] and [[int]]."""
    if isinstance(value, str):
        return [(value, count_tokens(value))]
    if isinstance(value, list):
        if value and all(isinstance(v, int) for v in value):
            return [(" ".join(map(str, value)), len(value))]
        out = []
        for item in value:
            if isinstance(item, str):
                out.append((item, count_tokens(item)))
            elif isinstance(item, list):
                out.append((" ".join(map(str, item)), len(item)))
            else:
                out.append((str(item), count_tokens(str(item))))
        return out
    return [(str(value or ""), count_tokens(str(value or "")))]


def embeddings_response(body: dict, *, default_dims: int = 8) -> dict:
    """OpenAI embeddings ``list`` object; honours ``dimensions`` and ``encoding_format=base64``."""
    dims = _int_or_none(body.get("dimensions")) or default_dims
    as_base64 = body.get("encoding_format") == "base64"
    data = []
    total = 0
    for index, (text, tokens) in enumerate(_embedding_inputs(body.get("input"))):
        total += tokens
        vector: Any = embedding_for(text, dims)
        if as_base64:
            vector = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
        data.append({"object": "embedding", "index": index, "embedding": vector})
    return {
        "object": "list",
        "data": data,
        "model": str(body.get("model") or "mock-embed"),
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }


def models_list(names: Any = DEFAULT_MODELS) -> dict:
    """OpenAI ``GET /v1/models`` response."""
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": MODELS_CREATED, "owned_by": "mock"} for n in names],
    }


def openai_error(status: int, message: str | None = None) -> dict:
    """OpenAI error envelope for an HTTP status."""
    kind, code = {
        400: ("invalid_request_error", None),
        401: ("invalid_request_error", "invalid_api_key"),
        403: ("invalid_request_error", "forbidden"),
        404: ("invalid_request_error", "model_not_found"),
        429: ("requests", "rate_limit_exceeded"),
    }.get(status, ("server_error", None))
    return {
        "error": {
            "message": message or f"Mock provider error (HTTP {status})",
            "type": kind,
            "param": None,
            "code": code,
        }
    }


# --------------------------------------------------------------------------------------------
# Anthropic wire format
# --------------------------------------------------------------------------------------------


def _anthropic_tool_block(call: dict) -> dict:
    return {
        "type": "tool_use",
        "id": "toolu_" + call["id"].removeprefix("call_"),
        "name": call["function"]["name"],
        "input": json.loads(call["function"]["arguments"]),
    }


def anthropic_message(
    body: dict,
    *,
    message_id: str | None = None,
    include_usage: bool = True,
    plan: ChatPlan | None = None,
) -> dict:
    """Non-streaming Anthropic ``message`` object for a Messages API request body."""
    plan = plan or plan_anthropic(body)
    if plan.tool_call is not None:
        content = [_anthropic_tool_block(plan.tool_call)]
    else:
        content = [{"type": "text", "text": plan.text or ""}]
    out: dict[str, Any] = {
        "id": message_id or new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": content,
        "stop_reason": plan.anthropic_stop_reason,
        "stop_sequence": None,
    }
    if include_usage:
        out["usage"] = {"input_tokens": plan.prompt_tokens, "output_tokens": plan.completion_tokens}
    return out


def anthropic_stream_events(
    body: dict,
    *,
    chunks: int = 20,
    message_id: str | None = None,
    include_usage: bool = True,
    plan: ChatPlan | None = None,
) -> list[tuple[str, dict]]:
    """``(event name, data)`` pairs of a streamed Anthropic answer, like the real API sends them.

    message_start (usage: input tokens, output_tokens 1), ping, content_block_start,
    ``chunks`` x content_block_delta (text_delta, or input_json_delta for tool_use),
    content_block_stop, message_delta (stop_reason + usage.output_tokens = final total),
    message_stop. Without ``include_usage`` no usage objects are sent at all.
    """
    plan = plan or plan_anthropic(body)
    start_message: dict[str, Any] = {
        "id": message_id or new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": plan.model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }
    if include_usage:
        start_message["usage"] = {"input_tokens": plan.prompt_tokens, "output_tokens": 1}
    events: list[tuple[str, dict]] = [
        ("message_start", {"type": "message_start", "message": start_message}),
        ("ping", {"type": "ping"}),
    ]
    if plan.tool_call is not None:
        block = _anthropic_tool_block(plan.tool_call)
        block_start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": piece}
            for piece in split_chunks(plan.tool_call["function"]["arguments"], chunks)
        ]
    else:
        block_start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": piece} for piece in split_chunks(plan.text or "", chunks)]
    events.append(("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block_start}))
    events.extend(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": d}) for d in deltas)
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    message_delta: dict[str, Any] = {
        "type": "message_delta",
        "delta": {"stop_reason": plan.anthropic_stop_reason, "stop_sequence": None},
    }
    if include_usage:
        message_delta["usage"] = {"output_tokens": plan.completion_tokens}
    events.append(("message_delta", message_delta))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def anthropic_count_tokens(body: dict) -> dict:
    """Response of ``POST /v1/messages/count_tokens``."""
    return {"input_tokens": count_tokens(anthropic_prompt_text(body))}


def anthropic_models_list(names: Any = DEFAULT_MODELS) -> dict:
    """Anthropic ``GET /v1/models`` response."""
    names = list(names)
    return {
        "data": [{"type": "model", "id": n, "display_name": n, "created_at": "2025-01-01T00:00:00Z"} for n in names],
        "has_more": False,
        "first_id": names[0] if names else None,
        "last_id": names[-1] if names else None,
    }


def anthropic_error(status: int, message: str | None = None) -> dict:
    """Anthropic error envelope for an HTTP status."""
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        403: "permission_error",
        404: "not_found_error",
        413: "request_too_large",
        429: "rate_limit_error",
        529: "overloaded_error",
    }.get(status, "api_error")
    return {
        "type": "error",
        "error": {"type": kind, "message": message or f"Mock provider error (HTTP {status})"},
    }


# --------------------------------------------------------------------------------------------
# Server-sent events
# --------------------------------------------------------------------------------------------

SSE_DONE = b"data: [DONE]\n\n"


def sse_data(obj: Any) -> bytes:
    """OpenAI-style SSE frame: ``data: <json>\\n\\n``."""
    return b"data: " + _dumps(obj).encode() + b"\n\n"


def sse_event(event: str, obj: Any) -> bytes:
    """Anthropic-style SSE frame: ``event: <name>\\ndata: <json>\\n\\n``."""
    return b"event: " + event.encode() + b"\ndata: " + _dumps(obj).encode() + b"\n\n"
