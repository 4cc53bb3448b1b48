"""The public gateway API: OpenAI-compatible and Anthropic-compatible operations.

Operations parse (ninja + pydantic validate the body), call the pipeline, respond. All errors
leave through ``sentinel_site.api``'s handlers in the OpenAI (or Anthropic) envelope.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway import pipeline, translate
from gateway.catalog import snapshot
from gateway.errors import ModelNotFound
from gateway.schemas import ChatCompletionIn, EmbeddingIn, MessagesIn

router = Router(tags=["gateway"])


@router.post("/chat/completions", url_name="chat_completions", summary="Create a chat completion")
async def create_chat_completion(request: HttpRequest, payload: ChatCompletionIn) -> HttpResponse:
    body = pipeline.body_of(payload)
    pipeline.reject_upstream_overrides(body)
    call = await pipeline.prepare(request, request.auth, body, endpoint="chat.completions", kind="chat")
    return await pipeline.run_chat(call)


@router.post("/messages", url_name="messages", summary="Create a message (Anthropic Messages API)")
async def create_message(request: HttpRequest, payload: MessagesIn) -> HttpResponse:
    raw = payload.model_dump(exclude_unset=True)
    pipeline.reject_upstream_overrides(raw)
    body = translate.anthropic_to_openai_request(raw)
    if body.get("stream"):
        body["stream_options"] = {"include_usage": True}
    call = await pipeline.prepare(request, request.auth, body, endpoint="messages", kind="chat")
    return await pipeline.run_chat(call, surface="anthropic")


@router.post("/embeddings", url_name="embeddings", summary="Create embeddings")
async def create_embeddings(request: HttpRequest, payload: EmbeddingIn) -> HttpResponse:
    body = pipeline.body_of(payload)
    pipeline.reject_upstream_overrides(body)
    call = await pipeline.prepare(request, request.auth, body, endpoint="embeddings", kind="embedding")
    return await pipeline.run_embeddings(call)


def _allowed(key, names: list[str]) -> list[str]:
    allowed = key.allowed_models or key.tenant.allowed_models
    return [n for n in names if not allowed or n in allowed]


@router.get("/models", url_name="list_models", summary="List the models this key may use")
async def list_models(request: HttpRequest) -> dict:
    catalog = await snapshot()
    names = _allowed(request.auth, sorted(n for n, m in catalog.models.items() if m.routes))
    created = int(request.auth.tenant.created_at.timestamp())
    return {
        "object": "list",
        "data": [{"id": n, "object": "model", "created": created, "owned_by": "sentinel"} for n in names],
    }


@router.get("/models/{model_id}", url_name="retrieve_model", summary="Retrieve a model")
async def retrieve_model(request: HttpRequest, model_id: str) -> dict:
    catalog = await snapshot()
    model = catalog.models.get(model_id)
    if model is None or not model.routes or not _allowed(request.auth, [model_id]):
        raise ModelNotFound(f"The model '{model_id}' does not exist or is not available.", param="model")
    return {
        "id": model_id,
        "object": "model",
        "created": int(request.auth.tenant.created_at.timestamp()),
        "owned_by": "sentinel",
    }
