"""The platform catalog: providers, public models and the routes between them.

The catalog is global (the platform operator's), not tenant data; tenants choose among its models.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Provider(models.Model):
    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible"
        ANTHROPIC = "anthropic", "Anthropic"
        MOCK = "mock", "Built-in mock"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    base_url = models.URLField(max_length=300, blank=True)
    api_key_env = models.CharField(max_length=100, blank=True, help_text="Environment variable with the credential")
    encrypted_api_key = models.TextField(blank=True, editable=False, help_text="Fernet-encrypted credential")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Model(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat", "Chat"
        EMBEDDING = "embedding", "Embedding"

    name = models.CharField(max_length=128, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHAT)
    enabled = models.BooleanField(default=True)
    max_output_tokens = models.PositiveIntegerField(
        default=4096, help_text="Worst case reserved against budgets when a request sets no max_tokens"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Route(models.Model):
    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="routes")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="routes")
    upstream_model = models.CharField(max_length=128)
    priority = models.PositiveSmallIntegerField(default=1, help_text="Lower is tried first")
    weight = models.PositiveSmallIntegerField(default=1, help_text="Share among routes of equal priority")
    timeout_seconds = models.FloatField(null=True, blank=True)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "priority", "-weight"]
        constraints = [
            models.UniqueConstraint(fields=["model", "provider", "upstream_model"], name="route_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} -> {self.provider.name}/{self.upstream_model}"

    @property
    def label(self) -> str:
        return f"{self.provider.name}/{self.upstream_model}"
