"""Who may act from the console: the admin session, its form token, the origin check."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from api.console import actions
from chute.runtime.config import Config

CONFIG = replace(Config.from_env({}), admin_token="the-admin-token")


def signed_in_cookie(config: Config = CONFIG) -> str:
    response = web.Response()
    actions.sign_in(config, make_mocked_request("POST", "/console/admin"), response,
                    "the-admin-token")
    return response.cookies[actions.COOKIE].value


def with_cookie(value: str, **headers: str) -> web.Request:
    return make_mocked_request("GET", "/", headers={"Cookie": f"{actions.COOKIE}={value}",
                                                    "Host": "console.test", **headers})


def test_a_session_signed_with_the_admin_token_is_recognised() -> None:
    session = actions.session_of(CONFIG, with_cookie(signed_in_cookie()))
    assert session is not None and len(session) == 32


def test_a_forged_or_stale_session_is_not() -> None:
    session, _, _ = signed_in_cookie().partition(".")
    assert actions.session_of(CONFIG, with_cookie(f"{session}.{'0' * 64}")) is None
    rotated = replace(CONFIG, admin_token="a-new-admin-token")
    assert actions.session_of(rotated, with_cookie(signed_in_cookie())) is None
    assert actions.session_of(replace(CONFIG, admin_token=None),
                              with_cookie(signed_in_cookie())) is None


def test_the_wrong_admin_token_signs_nobody_in() -> None:
    with pytest.raises(actions.Forbidden, match="not the admin token"):
        actions.sign_in(CONFIG, make_mocked_request("POST", "/console/admin"), web.Response(),
                        "guess")


def test_each_session_has_its_own_form_token() -> None:
    assert actions.csrf_token(CONFIG, "a" * 32) != actions.csrf_token(CONFIG, "b" * 32)


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://evil.example"}, {"Origin": "null"},
])
def test_a_request_from_elsewhere_is_refused(headers: dict[str, str]) -> None:
    with pytest.raises(actions.Forbidden):
        actions.check_same_origin(with_cookie("x", **headers))


@pytest.mark.parametrize("headers", [
    {}, {"Sec-Fetch-Site": "same-origin", "Origin": "http://console.test"},
])
def test_a_request_from_the_console_itself_passes(headers: dict[str, str]) -> None:
    actions.check_same_origin(with_cookie("x", **headers))


def test_actions_are_off_without_the_token_or_a_broker() -> None:
    assert actions.enabled(CONFIG, True)
    assert not actions.enabled(CONFIG, False)
    assert not actions.enabled(replace(CONFIG, admin_token=None), True)


def test_the_admin_token_must_differ_from_the_api_token() -> None:
    from chute.errors import ConfigError

    with pytest.raises(ConfigError, match="CHUTE_ADMIN_TOKEN must differ"):
        Config.from_env({"CHUTE_API_TOKEN": "same", "CHUTE_ADMIN_TOKEN": "same"})
