"""Request bodies of the public API. Field names copy OpenAI's / Anthropic's exactly; unknown
fields are kept (``extra="allow"``) and passed through to the provider."""

from __future__ import annotations

from typing import Any, Literal

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Schema(BaseModel):
    """Plain pydantic, not ``ninja.Schema``: ninja's schema validates through attribute access
    (for ORM objects), which silently drops the unknown fields we must pass through."""

    model_config = ConfigDict(extra="allow")


def _content_chars(content: Any) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(p.get("text", "")) for p in content if isinstance(p, dict))
    return 0


def _within_limits(messages: list) -> list:
    """The input limits from settings: message count and total content length."""
    if len(messages) > settings.SENTINEL_MAX_MESSAGES:
        raise ValueError(f"at most {settings.SENTINEL_MAX_MESSAGES} messages are allowed")
    total = sum(_content_chars(m.content) for m in messages)
    if total > settings.SENTINEL_MAX_CONTENT_CHARS:
        raise ValueError(f"total content is {total} characters; the limit is {settings.SENTINEL_MAX_CONTENT_CHARS}")
    return messages


class ChatMessageIn(Schema):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatCompletionIn(Schema):
    model: str = Field(min_length=1, max_length=128)
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = Field(default=None, max_length=256)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    metadata: dict[str, str] | None = None

    @field_validator("messages")
    @classmethod
    def _limits(cls, messages: list[ChatMessageIn]) -> list[ChatMessageIn]:
        return _within_limits(messages)

    @model_validator(mode="after")
    def _not_empty(self) -> ChatCompletionIn:
        if not any(m.content or m.tool_calls for m in self.messages):
            raise ValueError("messages are empty: at least one message needs content")
        return self


class EmbeddingIn(Schema):
    model: str = Field(min_length=1, max_length=128)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None

    @field_validator("input")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value in ("", []) or (isinstance(value, list) and any(v in ("", []) for v in value)):
            raise ValueError("input must not be empty")
        if isinstance(value, list) and len(value) > 2048:
            raise ValueError("at most 2048 inputs per request")
        return value


class AnthropicMessageIn(Schema):
    role: Literal["user", "assistant"]
    content: str | list[dict[str, Any]]


class MessagesIn(Schema):
    model: str = Field(min_length=1, max_length=128)
    messages: list[AnthropicMessageIn] = Field(min_length=1)
    max_tokens: int = Field(ge=1)
    system: str | list[dict[str, Any]] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    stop_sequences: list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _limits(cls, messages: list[AnthropicMessageIn]) -> list[AnthropicMessageIn]:
        return _within_limits(messages)
