"""`/channels/{name}/notify`: where channels send their asynchronous notifications."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from piaohao.api.deps import platform
from piaohao.platform import Platform
from piaohao.services.inbound import handle_channel_notification

router = APIRouter(prefix="/channels", tags=["channels"], include_in_schema=False)


@router.post("/{channel}/notify")
async def channel_notify(channel: str, request: Request, p: Platform = Depends(platform)):
    import anyio.to_thread

    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    client = request.client.host if request.client else None
    ack = await anyio.to_thread.run_sync(lambda: handle_channel_notification(p, channel, headers, body, client=client))
    return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)
