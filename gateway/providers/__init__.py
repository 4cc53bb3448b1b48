"""Provider adapters by kind; one adapter object per catalog provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the standalone mock server imports mock_engine from here without Django
    from gateway.catalog import ProviderInfo
    from gateway.providers.base import Provider

_adapters: dict[tuple, Provider] = {}


def adapter_for(info: ProviderInfo) -> Provider:
    adapter = _adapters.get(info)
    if adapter is None:
        from gateway.providers.anthropic import AnthropicProvider
        from gateway.providers.builtin import BuiltinMockProvider
        from gateway.providers.openai import OpenAIProvider

        if info.kind == "mock" and not info.base_url:
            adapter = BuiltinMockProvider(info)
        elif info.kind == "anthropic":
            adapter = AnthropicProvider(info)
        else:  # "openai", or a mock served over HTTP
            adapter = OpenAIProvider(info)
        _adapters[info] = adapter
    return adapter
