"""Incremental Server-Sent Events parsing over an httpx byte stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx


async def sse_frames(response: httpx.Response) -> AsyncIterator[tuple[str, bytes]]:
    """Yield ``(event, data)`` for each SSE frame as soon as its blank line arrives."""
    buffer = b""
    async for piece in response.aiter_raw():
        buffer += piece
        while True:
            end = buffer.find(b"\n\n")
            if end < 0:
                crlf = buffer.find(b"\r\n\r\n")
                if crlf < 0:
                    break
                frame, buffer = buffer[:crlf].replace(b"\r\n", b"\n"), buffer[crlf + 4 :]
            else:
                frame, buffer = buffer[:end], buffer[end + 2 :]
            event, data = "", []
            for line in frame.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif line.startswith(b"event:"):
                    event = line[6:].strip().decode()
            if data:
                yield event, b"\n".join(data)
