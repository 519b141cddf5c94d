"""API Gateway (HTTP API, payload format 2.0) -> the aiohttp application, in-process.

The application built by api.app.create_app serves on a Unix socket inside the Lambda
container, and each event is replayed to it as the HTTP request it was. Routing,
parameter checks, the token, errors and JSON are the aiohttp API's own code; this module
knows no route, so routes added to the API need no change here.

One event loop runs both the server and the client. It runs only during an invocation
(Lambda freezes the container in between), so the client opens a new connection per
request rather than reuse one the server may have timed out meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import web
from yarl import URL

from api.app import create_app
from chute.runtime.config import Config

log = logging.getLogger(__name__)

# Headers about one hop (RFC 9110 7.6.1): they describe the connection to API Gateway or
# to the socket, not the request or the answer.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "content-length"})
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")


class ApiGateway:
    """The aiohttp application, started once per container, answering gateway events."""

    def __init__(self, config: Config) -> None:
        self.loop = asyncio.new_event_loop()
        self.folder = Path(tempfile.mkdtemp(prefix="chute-api-"))
        # S3 events and Lambda invocations replace RabbitMQ here: /ready checks the database.
        self.runner = web.AppRunner(create_app(config, uses_broker=False), access_log=None)
        self.session: aiohttp.ClientSession | None = None
        try:
            self.loop.run_until_complete(self._start())
        except BaseException:
            self.close()
            raise

    async def _start(self) -> None:
        socket = str(self.folder / "api.sock")
        await self.runner.setup()
        await web.UnixSite(self.runner, socket).start()
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=socket, force_close=True),
            # Send exactly the caller's headers and hand back exactly the app's bytes.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            auto_decompress=False,
        )

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """One payload 2.0 event -> one payload 2.0 response."""
        return self.loop.run_until_complete(self._forward(event))

    async def _forward(self, event: dict[str, Any]) -> dict[str, Any]:
        assert self.session is not None
        http = event["requestContext"]["http"]
        async with self.session.request(
            http["method"], _url(event), headers=_request_headers(event), data=_body(event),
            allow_redirects=False,
        ) as response:
            body = await response.read()
            return _gateway_response(response, body)

    def close(self) -> None:
        async def stop() -> None:
            if self.session is not None:
                await self.session.close()
            await self.runner.cleanup()

        try:
            if not self.loop.is_closed():
                self.loop.run_until_complete(stop())
                self.loop.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _url(event: dict[str, Any]) -> URL:
    """The request target as the caller sent it: rawPath and rawQueryString are kept
    encoded as they came, so the app parses them exactly as it would behind any proxy."""
    path = quote(event.get("rawPath") or "/", safe="/%:@!$&'()*+,;=-._~")
    query = event.get("rawQueryString") or ""
    return URL("http://chute" + path + ("?" + query if query else ""), encoded=True)


def _request_headers(event: dict[str, Any]) -> dict[str, str]:
    headers = {name: value for name, value in (event.get("headers") or {}).items()
               if name.lower() not in HOP_BY_HOP}
    if cookies := event.get("cookies"):
        headers["cookie"] = "; ".join(cookies)  # payload 2.0 moves them out of the headers
    return headers


def _body(event: dict[str, Any]) -> bytes | None:
    body = event.get("body")
    if body is None:
        return None
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()


def _gateway_response(response: aiohttp.ClientResponse, body: bytes) -> dict[str, Any]:
    headers: dict[str, str] = {}
    cookies = []
    for name, value in response.headers.items():
        key = name.lower()
        if key == "set-cookie":
            cookies.append(value)
        elif key not in HOP_BY_HOP:
            # Payload 2.0 has one value per header: repeated headers are joined with
            # commas, as HTTP allows for every header but Set-Cookie.
            headers[key] = f"{headers[key]},{value}" if key in headers else value
    answer: dict[str, Any] = {"statusCode": response.status, "headers": headers}
    if cookies:
        answer["cookies"] = cookies
    text = _as_text(headers, body)
    if text is None:
        answer.update(body=base64.b64encode(body).decode(), isBase64Encoded=True)
    else:
        answer.update(body=text, isBase64Encoded=False)
    return answer


def _as_text(headers: dict[str, str], body: bytes) -> str | None:
    """The body as text when it is text (JSON, Prometheus text, ...), else None."""
    if not body:
        return ""
    kind = headers.get("content-type", "").lower()
    if "content-encoding" in headers or not (kind.startswith(TEXT_TYPES) or "+json" in kind):
        return None
    try:
        return body.decode()
    except UnicodeDecodeError:
        return None
