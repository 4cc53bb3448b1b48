"""``sync_catalog``: idempotent import of providers, models, routes and prices from YAML.

Format (kept stable; scripts depend on it)::

    providers:
      - {name: openai-main, kind: openai, base_url: http://127.0.0.1:18000/v1, api_key_env: OPENAI_API_KEY}
    models:
      - name: gpt-4o-mini
        routes: [{provider: openai-main, model: gpt-4o-mini, priority: 1}]
        price: {input: 0.15, cached_input: 0.075, output: 0.60}   # USD per 1M tokens

The file is the truth for what it names: a listed model's routes are replaced by the file's; a
changed price adds a price version effective now (or at ``price.effective_from``); nothing is
deleted that the file does not name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from audit.services import record
from billing.models import Price
from gateway.models import Model, Provider, Route
from sentinel_site import bus


class CatalogError(Exception):
    """A bad catalog file; the message names the entry."""


@dataclass
class SyncResult:
    providers: int = 0
    models: int = 0
    routes: int = 0
    prices_added: int = 0
    changes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"catalog synced: {self.providers} providers, {self.models} models, {self.routes} routes, "
            f"{self.prices_added} new price versions"
        )


def _mapping(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise CatalogError(f"{where}: expected a mapping, got {type(value).__name__}")
    return value


def _price(value: Any, where: str) -> Decimal:
    try:
        price = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise CatalogError(f"{where}: {value!r} is not a number") from None
    if price < 0 or not price.is_finite():
        raise CatalogError(f"{where}: must be a non-negative number")
    return price.quantize(Decimal("0.000001"))


def load(path: str | Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise CatalogError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise CatalogError(f"{path}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise CatalogError(f"{path}: expected a mapping with 'providers' and 'models'")
    return data


@transaction.atomic
def catalog_sync(*, data: dict, actor: Any = None, now: datetime | None = None) -> SyncResult:
    now = now or timezone.now()
    result = SyncResult()
    kinds = set(Provider.Kind.values)
    unknown_keys = set(data) - {"providers", "models"}
    if unknown_keys:
        raise CatalogError(f"unknown top-level keys: {', '.join(sorted(unknown_keys))}")

    providers: dict[str, Provider] = {p.name: p for p in Provider.objects.all()}
    for i, raw in enumerate(data.get("providers") or []):
        entry = _mapping(raw, f"providers[{i}]")
        name = entry.get("name")
        where = f"provider {name!r}" if name else f"providers[{i}]"
        if not name or not isinstance(name, str):
            raise CatalogError(f"{where}: 'name' is required")
        kind = entry.get("kind")
        if kind not in kinds:
            raise CatalogError(f"{where}: kind must be one of {', '.join(sorted(kinds))}, got {kind!r}")
        extra = set(entry) - {"name", "kind", "base_url", "api_key_env", "enabled"}
        if extra:
            raise CatalogError(f"{where}: unknown fields {', '.join(sorted(extra))}")
        base_url = entry.get("base_url") or ""
        if kind != "mock" and not base_url:
            raise CatalogError(f"{where}: base_url is required for kind {kind}")
        values = {
            "kind": kind,
            "base_url": base_url.rstrip("/"),
            "api_key_env": entry.get("api_key_env") or "",
            "enabled": bool(entry.get("enabled", True)),
        }
        provider = providers.get(name)
        if provider is None:
            provider = Provider(name=name, **values)
            provider.full_clean()
            provider.save()
            providers[name] = provider
            result.changes.append(f"provider {name} added")
        elif any(getattr(provider, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(provider, k, v)
            provider.full_clean()
            provider.save(update_fields=list(values))
            result.changes.append(f"provider {name} updated")
        result.providers += 1

    for i, raw in enumerate(data.get("models") or []):
        entry = _mapping(raw, f"models[{i}]")
        name = entry.get("name")
        where = f"model {name!r}" if name else f"models[{i}]"
        if not name or not isinstance(name, str):
            raise CatalogError(f"{where}: 'name' is required")
        extra = set(entry) - {"name", "kind", "enabled", "max_output_tokens", "routes", "price"}
        if extra:
            raise CatalogError(f"{where}: unknown fields {', '.join(sorted(extra))}")
        kind = entry.get("kind", Model.Kind.CHAT)
        if kind not in Model.Kind.values:
            raise CatalogError(f"{where}: kind must be chat or embedding, got {kind!r}")
        max_out = entry.get("max_output_tokens", 4096)
        if not isinstance(max_out, int) or max_out < 1:
            raise CatalogError(f"{where}: max_output_tokens must be a positive integer")
        model, created = Model.objects.get_or_create(
            name=name,
            defaults={
                "kind": kind,
                "enabled": bool(entry.get("enabled", True)),
                "max_output_tokens": max_out,
            },
        )
        if not created:
            changed = {
                "kind": kind,
                "enabled": bool(entry.get("enabled", True)),
                "max_output_tokens": max_out,
            }
            fields = [k for k, v in changed.items() if getattr(model, k) != v]
            if fields:
                for k in fields:
                    setattr(model, k, changed[k])
                model.save(update_fields=fields)
                result.changes.append(f"model {name} updated")
        else:
            result.changes.append(f"model {name} added")
        result.models += 1

        routes = entry.get("routes")
        if not isinstance(routes, list) or not routes:
            raise CatalogError(f"{where}: at least one route is required")
        keep: set[int] = set()
        for j, raw_route in enumerate(routes):
            route = _mapping(raw_route, f"{where} routes[{j}]")
            pname = route.get("provider")
            if pname not in providers:
                raise CatalogError(f"{where} routes[{j}]: unknown provider {pname!r}")
            upstream = route.get("model") or name
            priority, weight = route.get("priority", 1), route.get("weight", 1)
            timeout = route.get("timeout")
            for label, number in (("priority", priority), ("weight", weight)):
                if not isinstance(number, int) or number < 0:
                    raise CatalogError(f"{where} routes[{j}]: {label} must be a non-negative integer")
            obj, _ = Route.objects.update_or_create(
                model=model,
                provider=providers[pname],
                upstream_model=upstream,
                defaults={
                    "priority": priority,
                    "weight": weight,
                    "enabled": True,
                    "timeout_seconds": float(timeout) if timeout is not None else None,
                },
            )
            keep.add(obj.pk)
            result.routes += 1
        removed = Route.objects.filter(model=model).exclude(pk__in=keep).delete()[0]
        if removed:
            result.changes.append(f"model {name}: {removed} routes removed")

        price = entry.get("price")
        if price is None:
            continue
        price = _mapping(price, f"{where} price")
        missing = {"input", "output"} - set(price)
        if missing:
            raise CatalogError(f"{where} price: missing {', '.join(sorted(missing))}")
        values = {
            "input_per_mtok": _price(price["input"], f"{where} price.input"),
            "cached_input_per_mtok": _price(price.get("cached_input", price["input"]), f"{where} price.cached_input"),
            "output_per_mtok": _price(price["output"], f"{where} price.output"),
        }
        effective = now
        if price.get("effective_from"):
            raw_eff = price["effective_from"]
            effective = raw_eff if isinstance(raw_eff, datetime) else parse_datetime(str(raw_eff))
            if effective is None:
                raise CatalogError(f"{where} price.effective_from: not a datetime: {raw_eff!r}")
            if timezone.is_naive(effective):
                effective = timezone.make_aware(effective, UTC)
        current = Price.objects.filter(model=model, effective_from__lte=effective).order_by("-effective_from").first()
        if current is not None and all(getattr(current, k) == v for k, v in values.items()):
            continue
        if Price.objects.filter(model=model, effective_from=effective).exists():
            raise CatalogError(f"{where} price: a different price version already starts at {effective}")
        new = Price.objects.create(model=model, effective_from=effective, **values)
        result.prices_added += 1
        result.changes.append(f"model {name}: price version {new.pk} from {effective:%Y-%m-%d %H:%M}")
        if current is not None:
            record(
                tenant=None,
                action="price.changed",
                actor=actor,
                target=new,
                before={k: str(getattr(current, k)) for k in values},
                after={k: str(v) for k, v in values.items()},
                metadata={"model": name, "effective_from": effective.isoformat()},
            )
    transaction.on_commit(catalog_changed)
    return result


def catalog_changed() -> None:
    """Every process reloads its catalog snapshot and price book."""
    bus.publish("catalog")


def catalog_sync_file(*, path: str | Path, actor: Any = None) -> SyncResult:
    return catalog_sync(data=load(path), actor=actor)
