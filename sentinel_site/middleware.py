"""The /v1 path's only middleware: async, no thread hop.

It assigns the request id (a valid client-supplied ``x-request-id`` is echoed), puts it in the log
context, and sets it on every response, errors included.
"""

from __future__ import annotations

import re
import uuid

from asgiref.sync import markcoroutinefunction

from sentinel_site.logging import request_context

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{8,64}$")


def new_request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


class ApiRequestMiddleware:
    sync_capable = False
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        supplied = request.headers.get("x-request-id", "")
        request.request_id = supplied if _VALID_REQUEST_ID.match(supplied) else new_request_id()
        token = request_context.set({"request_id": request.request_id})
        try:
            response = await self.get_response(request)
        finally:
            request_context.reset(token)
        response["x-request-id"] = request.request_id
        return response
