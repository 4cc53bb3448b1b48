from django.http import HttpRequest
from ninja import Router

router = Router(tags=["gateway"])


@router.get("/models", url_name="list_models")
async def list_models(request: HttpRequest) -> dict:
    return {"object": "list", "data": []}
