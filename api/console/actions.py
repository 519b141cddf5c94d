"""The console's actions: off unless CHUTE_ADMIN_TOKEN is set, and where a broker exists.

Who may act: a person signs in once with the admin token (POST /console/admin); the
answer sets an HttpOnly, SameSite=Strict cookie holding a random session id and its
HMAC under the admin token, so no server state is kept and changing the token ends every
session. Against cross-site requests, every action's form carries a second HMAC of the
same session id (a token only a page of this console can hold), and a request whose
Origin or Sec-Fetch-Site says another site is refused before anything is read.

How an action reaches the pipeline: the API's database role cannot write, and the files
belong to the watcher's folders. So the API publishes a request on the durable
{ns}.control queue, and the watcher carries it out (watcher/control.py) with the same
code as `chute retry`, logging what it did or why it refused; a replay or a rebuild it
starts as the `chute replay` or `chute rebuild` command.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from datetime import UTC, datetime

from aiohttp import web
from yarl import URL

from chute.commands.retry import RETRYABLE
from chute.rabbitmq.broker import CONTROL, Broker
from chute.rabbitmq.messages import CommandRequested, RetryRequested
from chute.runtime.config import Config

log = logging.getLogger(__name__)

COOKIE = "chute_admin"
CSRF_FIELD = "csrf"
SESSION_SECONDS = 8 * 3600


class Forbidden(Exception):
    """The request may not act; str(e) says why (shown to the person, and logged)."""


def enabled(config: Config, uses_broker: bool) -> bool:
    return bool(config.admin_token) and uses_broker


def _sign(config: Config, purpose: str, session: str) -> str:
    assert config.admin_token
    return hmac.new(config.admin_token.encode(), f"{purpose}|{session}".encode(),
                    hashlib.sha256).hexdigest()


def session_of(config: Config, request: web.Request) -> str | None:
    """The signed-in admin session of this request, or None."""
    if not config.admin_token:
        return None
    session, _, signature = request.cookies.get(COOKIE, "").partition(".")
    if not session or not hmac.compare_digest(signature, _sign(config, "session", session)):
        return None
    return session


def csrf_token(config: Config, session: str) -> str:
    return _sign(config, "csrf", session)


def check_same_origin(request: web.Request) -> None:
    """Browsers say where a request comes from; a form posted from another site says so."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        raise Forbidden(f"a request from another site ({site}) cannot act")
    origin = request.headers.get("Origin")
    if origin == "null":
        raise Forbidden("a request from an opaque origin cannot act")
    if origin is not None and URL(origin).host_port_subcomponent != request.host:
        raise Forbidden("a request from another origin cannot act")


async def check_action(config: Config, uses_broker: bool, request: web.Request) -> None:
    """Raise Forbidden unless this POST may act: actions on, same origin, signed in, and
    the form's token is this session's."""
    if not enabled(config, uses_broker):
        raise Forbidden("actions are off: CHUTE_ADMIN_TOKEN is not set"
                        if uses_broker else "actions are off: this deployment has no broker")
    check_same_origin(request)
    session = session_of(config, request)
    if session is None:
        raise Forbidden("sign in with the admin token first")
    form = await request.post()
    given = str(form.get(CSRF_FIELD, ""))
    if not hmac.compare_digest(given.encode(), csrf_token(config, session).encode()):
        raise Forbidden("the form's token does not match this session: reload the page")


def sign_in(config: Config, request: web.Request, response: web.StreamResponse,
            token: str) -> None:
    assert config.admin_token
    if not hmac.compare_digest(token.encode(), config.admin_token.encode()):
        raise Forbidden("that is not the admin token")
    session = secrets.token_hex(16)
    response.set_cookie(COOKIE, f"{session}.{_sign(config, 'session', session)}",
                        max_age=SESSION_SECONDS, httponly=True, samesite="Strict", path="/",
                        secure=request.secure)


def sign_out(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")


def retryable(state: str) -> bool:
    return state in RETRYABLE


def replayable(item: dict[str, object]) -> bool:
    """`chute replay` takes a loaded file's rejected rows."""
    rejected = item.get("rows_rejected")
    return item["state"] == "loaded" and isinstance(rejected, int) and rejected > 0


async def request_retry(config: Config, file_id: str) -> None:
    await _publish(config, RetryRequested(file_id=file_id, requested_at=_now()))


async def request_command(config: Config, command: str, file_id: str, dataset: str) -> None:
    await _publish(config, CommandRequested(command=command, file_id=file_id,
                                            dataset=dataset, requested_at=_now()))


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def _publish(config: Config, message: RetryRequested | CommandRequested) -> None:
    """Publish the request (confirmed by the broker) for the watcher to carry out."""

    def publish() -> None:
        broker = Broker(config.amqp_url, config.namespace)
        try:
            broker.publish(CONTROL, *message.encode())
        finally:
            broker.close()

    await asyncio.get_running_loop().run_in_executor(None, publish)
