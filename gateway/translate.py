"""OpenAI <-> Anthropic translation. Internally every request and response is OpenAI-shaped.

* ``openai_to_anthropic_request`` / ``anthropic_response_to_openai`` / ``AnthropicStreamToOpenAI``:
  calling an Anthropic provider from the OpenAI shape.
* ``anthropic_to_openai_request`` / ``openai_response_to_anthropic`` / ``OpenAIStreamToAnthropic``:
  serving the Anthropic Messages surface (``/v1/messages``) from the OpenAI shape.

Tools, tool calls and tool results round-trip both ways.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

STOP_TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "content_filter": "refusal",
    "function_call": "tool_use",
}
STOP_TO_OPENAI = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop",
    "refusal": "content_filter",
    "pause_turn": "stop",
}


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return str(content)


def _loads(arguments: Any) -> Any:
    if isinstance(arguments, dict):
        return arguments
    try:
        value = json.loads(arguments or "{}")
    except (TypeError, ValueError):
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_value": value}


# --------------------------------------------------------------------------- OpenAI -> Anthropic
def _openai_part_to_anthropic(part: dict) -> dict | None:
    kind = part.get("type")
    if kind == "text":
        return {"type": "text", "text": part.get("text", "")}
    if kind == "image_url":
        url = (part.get("image_url") or {}).get("url", "")
        if url.startswith("data:") and ";base64," in url:
            media, data = url[5:].split(";base64,", 1)
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def _openai_tools_to_anthropic(tools: list[dict]) -> list[dict]:
    out = []
    for tool in tools:
        fn = tool.get("function") if tool.get("type") == "function" else None
        if fn:
            out.append(
                {
                    "name": fn["name"],
                    "description": fn.get("description", ""),
                    "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
                }
            )
    return out


def _openai_tool_choice_to_anthropic(choice: Any) -> dict | None:
    if choice in (None, "auto"):
        return {"type": "auto"} if choice else None
    if choice == "required":
        return {"type": "any"}
    if choice == "none":
        return {"type": "none"}
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": choice["function"]["name"]}
    return None


def openai_to_anthropic_request(body: dict, *, upstream_model: str, default_max_tokens: int) -> dict:
    system_parts: list[str] = []
    messages: list[dict] = []

    def append(role: str, blocks: list[dict]) -> None:
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)  # Anthropic wants alternating roles
        else:
            messages.append({"role": role, "content": blocks})

    for msg in body.get("messages", []):
        role = msg.get("role")
        content = msg.get("content")
        if role in ("system", "developer"):
            system_parts.append(_text_of(content))
        elif role == "tool":
            append(
                "user",
                [{"type": "tool_result", "tool_use_id": msg.get("tool_call_id", ""), "content": _text_of(content)}],
            )
        elif role == "assistant":
            blocks: list[dict] = []
            text = _text_of(content)
            if text:
                blocks.append({"type": "text", "text": text})
            for call in msg.get("tool_calls") or []:
                fn = call.get("function", {})
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or f"toolu_{uuid.uuid4().hex[:24]}",
                        "name": fn.get("name", ""),
                        "input": _loads(fn.get("arguments")),
                    }
                )
            if blocks:
                append("assistant", blocks)
        else:
            if isinstance(content, list):
                blocks = [b for b in (_openai_part_to_anthropic(p) for p in content if isinstance(p, dict)) if b]
            else:
                blocks = [{"type": "text", "text": content or ""}]
            append("user", blocks)

    out: dict[str, Any] = {
        "model": upstream_model,
        "messages": messages,
        "max_tokens": body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens,
    }
    if system_parts:
        out["system"] = "\n\n".join(system_parts)
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            out[name] = body[name]
    stop = body.get("stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if body.get("tools"):
        out["tools"] = _openai_tools_to_anthropic(body["tools"])
        choice = _openai_tool_choice_to_anthropic(body.get("tool_choice"))
        if choice:
            out["tool_choice"] = choice
    if body.get("user"):
        out["metadata"] = {"user_id": str(body["user"])[:256]}
    if body.get("stream"):
        out["stream"] = True
    return out


def anthropic_usage_to_openai(usage: dict) -> dict:
    cached = int(usage.get("cache_read_input_tokens") or 0)
    created = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cached + created
    completion = int(usage.get("output_tokens") or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


def anthropic_response_to_openai(data: dict, *, model: str) -> dict:
    text_parts, tool_calls = [], []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            text_parts.append(block.get("text", ""))
        elif block.get("type") == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": json.dumps(block.get("input", {}))},
                }
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(text_parts) or None, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-" + str(data.get("id", uuid.uuid4().hex)).removeprefix("msg_"),
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": STOP_TO_OPENAI.get(data.get("stop_reason") or "end_turn", "stop"),
            }
        ],
        "usage": anthropic_usage_to_openai(data.get("usage") or {}),
    }


class AnthropicStreamToOpenAI:
    """Feeds Anthropic stream events, returns the OpenAI chunk dicts each one becomes."""

    def __init__(self, *, model: str, created: int) -> None:
        self.model = model
        self.created = created
        self.id = "chatcmpl-" + uuid.uuid4().hex[:24]
        self.usage: dict = {}
        self.tool_index: dict[int, int] = {}

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    def feed(self, event: str, data: dict) -> list[dict]:
        kind = data.get("type", event)
        if kind == "message_start":
            self.usage.update((data.get("message") or {}).get("usage") or {})
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = len(self.tool_index)
                self.tool_index[data.get("index", 0)] = index
                return [
                    self._chunk(
                        {
                            "tool_calls": [
                                {
                                    "index": index,
                                    "id": block.get("id"),
                                    "type": "function",
                                    "function": {"name": block.get("name"), "arguments": ""},
                                }
                            ]
                        }
                    )
                ]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self._chunk({"content": delta.get("text", "")})]
            if delta.get("type") == "input_json_delta":
                index = self.tool_index.get(data.get("index", 0), 0)
                return [
                    self._chunk(
                        {"tool_calls": [{"index": index, "function": {"arguments": delta.get("partial_json", "")}}]}
                    )
                ]
            return []
        if kind == "message_delta":
            usage = data.get("usage") or {}
            self.usage.update({k: v for k, v in usage.items() if v is not None})
            stop = (data.get("delta") or {}).get("stop_reason")
            return [self._chunk({}, STOP_TO_OPENAI.get(stop or "end_turn", "stop"))]
        if kind == "message_stop":
            return [
                {
                    "id": self.id,
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model,
                    "choices": [],
                    "usage": anthropic_usage_to_openai(self.usage),
                }
            ]
        return []


# --------------------------------------------------------------------------- Anthropic -> OpenAI
def _anthropic_block_to_openai_part(block: dict) -> dict | None:
    kind = block.get("type")
    if kind == "text":
        return {"type": "text", "text": block.get("text", "")}
    if kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            return {
                "type": "image_url",
                "image_url": {"url": f"data:{source.get('media_type')};base64,{source.get('data')}"},
            }
        if source.get("type") == "url":
            return {"type": "image_url", "image_url": {"url": source.get("url")}}
    return None


def anthropic_to_openai_request(body: dict) -> dict:
    messages: list[dict] = []
    system = body.get("system")
    if system:
        messages.append({"role": "system", "content": _text_of(system)})
    for msg in body.get("messages", []):
        role, content = msg.get("role"), msg.get("content")
        if isinstance(content, str):
            messages.append({"role": role, "content": content})
            continue
        blocks = content or []
        if role == "assistant":
            text = "".join(b.get("text", "") for b in blocks if b.get("type") == "text")
            calls = [
                {
                    "id": b.get("id"),
                    "type": "function",
                    "function": {"name": b.get("name"), "arguments": json.dumps(b.get("input", {}))},
                }
                for b in blocks
                if b.get("type") == "tool_use"
            ]
            out: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                out["tool_calls"] = calls
            messages.append(out)
            continue
        parts = []
        for block in blocks:
            if block.get("type") == "tool_result":
                if parts:
                    messages.append({"role": "user", "content": parts})
                    parts = []
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": block.get("tool_use_id", ""),
                        "content": _text_of(block.get("content")),
                    }
                )
            else:
                part = _anthropic_block_to_openai_part(block)
                if part:
                    parts.append(part)
        if parts:
            messages.append({"role": "user", "content": parts})
    out = {"model": body.get("model"), "messages": messages, "max_tokens": body.get("max_tokens")}
    for name in ("temperature", "top_p", "stream"):
        if body.get(name) is not None:
            out[name] = body[name]
    if body.get("stop_sequences"):
        out["stop"] = body["stop_sequences"]
    if body.get("tools"):
        out["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": t.get("name"),
                    "description": t.get("description", ""),
                    "parameters": t.get("input_schema") or {"type": "object"},
                },
            }
            for t in body["tools"]
            if t.get("name")
        ]
        choice = body.get("tool_choice") or {}
        mapped = {"auto": "auto", "any": "required", "none": "none"}.get(choice.get("type"))
        if choice.get("type") == "tool":
            out["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
        elif mapped:
            out["tool_choice"] = mapped
    metadata = body.get("metadata") or {}
    if metadata.get("user_id"):
        out["user"] = metadata["user_id"]
    return out


def openai_usage_to_anthropic(usage: dict | None) -> dict:
    usage = usage or {}
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return {
        "input_tokens": int(usage.get("prompt_tokens") or 0) - cached,
        "output_tokens": int(usage.get("completion_tokens") or 0),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    }


def openai_response_to_anthropic(data: dict, *, model: str) -> dict:
    choice = (data.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content: list[dict] = []
    if message.get("content"):
        content.append({"type": "text", "text": message["content"]})
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        content.append(
            {"type": "tool_use", "id": call.get("id"), "name": fn.get("name"), "input": _loads(fn.get("arguments"))}
        )
    return {
        "id": "msg_" + str(data.get("id", uuid.uuid4().hex)).removeprefix("chatcmpl-"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_TO_ANTHROPIC.get(choice.get("finish_reason") or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": openai_usage_to_anthropic(data.get("usage")),
    }


class OpenAIStreamToAnthropic:
    """Feeds OpenAI chunk dicts, returns ``(event, data)`` pairs of the Anthropic stream."""

    def __init__(self, *, model: str, input_tokens_estimate: int) -> None:
        self.model = model
        self.id = "msg_" + uuid.uuid4().hex[:24]
        self.input_estimate = input_tokens_estimate
        self.started = False
        self.block: int | None = None  # index of the open content block
        self.block_kind: str | None = None
        self.next_index = 0
        self.tool_blocks: dict[int, int] = {}
        self.stop_reason = "end_turn"
        self.usage: dict | None = None

    def _start(self) -> list[tuple[str, dict]]:
        self.started = True
        return [
            (
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": self.id,
                        "type": "message",
                        "role": "assistant",
                        "model": self.model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": self.input_estimate, "output_tokens": 0},
                    },
                },
            )
        ]

    def _close_block(self) -> list[tuple[str, dict]]:
        if self.block is None:
            return []
        index, self.block, self.block_kind = self.block, None, None
        return [("content_block_stop", {"type": "content_block_stop", "index": index})]

    def _open(self, kind: str, block: dict) -> list[tuple[str, dict]]:
        events = self._close_block()
        self.block, self.block_kind = self.next_index, kind
        self.next_index += 1
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": self.block, "content_block": block})
        )
        return events

    def feed(self, chunk: dict) -> list[tuple[str, dict]]:
        events = [] if self.started else self._start()
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if text:
                if self.block_kind != "text":
                    events += self._open("text", {"type": "text", "text": ""})
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": self.block,
                            "delta": {"type": "text_delta", "text": text},
                        },
                    )
                )
            for call in delta.get("tool_calls") or []:
                oa_index = call.get("index", 0)
                fn = call.get("function") or {}
                if oa_index not in self.tool_blocks:
                    events += self._open(
                        "tool_use",
                        {
                            "type": "tool_use",
                            "id": call.get("id") or f"toolu_{oa_index}",
                            "name": fn.get("name", ""),
                            "input": {},
                        },
                    )
                    self.tool_blocks[oa_index] = self.block
                if fn.get("arguments"):
                    events.append(
                        (
                            "content_block_delta",
                            {
                                "type": "content_block_delta",
                                "index": self.tool_blocks[oa_index],
                                "delta": {"type": "input_json_delta", "partial_json": fn["arguments"]},
                            },
                        )
                    )
            if choice.get("finish_reason"):
                self.stop_reason = STOP_TO_ANTHROPIC.get(choice["finish_reason"], "end_turn")
        return events

    def finish(self) -> list[tuple[str, dict]]:
        events = [] if self.started else self._start()
        events += self._close_block()
        usage = openai_usage_to_anthropic(self.usage) if self.usage else {"output_tokens": 0}
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events
