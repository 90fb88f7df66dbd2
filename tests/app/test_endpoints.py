"""Endpoint resolution (daemon/app/endpoints.py): URL, credential headers, API flavour, model."""

from __future__ import annotations

import datetime
from dataclasses import replace

import pytest
from google.oauth2.credentials import Credentials

from daemon.app.config import LiveSettings, Secret
from daemon.app.endpoints import gemini_path, is_loopback, resolve, vertex_url
from daemon.errors import ConfigError

KEY = Secret("AIzaSyEXAMPLEKEY")
LIVE = LiveSettings()


def test_auto_is_gemini_with_a_key_and_the_local_server_without() -> None:
    with_key = resolve(LIVE, KEY)
    assert with_key.kind == "gemini" and not with_key.simulated
    assert with_key.endpoint.url == (
        "wss://generativelanguage.googleapis.com/ws/google.ai."
        "generativelanguage.v1beta.GenerativeService."
        "BidiGenerateContent"
    )
    assert dict(with_key.endpoint.headers) == {"x-goog-api-key": "AIzaSyEXAMPLEKEY"}
    assert "AIzaSyEXAMPLEKEY" not in repr(with_key)
    without = resolve(LIVE, None)
    assert without.local and without.simulated and without.api == "gemini"
    at = without.at("ws://127.0.0.1:1234" + gemini_path())
    assert at.endpoint.url.startswith("ws://127.0.0.1:1234/ws/") and "simulated" in at.describe()


def test_gemini_without_a_key_is_a_config_error_naming_the_endpoint() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(replace(LIVE, endpoint="gemini"), None)
    assert info.value.key == "live.endpoint" and "VOICED_API_KEY" in str(info.value)


def test_api_version_goes_into_the_gemini_path() -> None:
    t = resolve(replace(LIVE, endpoint="gemini", api_version="v1alpha"), KEY)
    assert ".v1alpha.GenerativeService.BidiGenerateContent" in t.endpoint.url


@pytest.mark.parametrize(
    "url,expected",
    [
        ("ws://127.0.0.1:9000", "ws://127.0.0.1:9000" + gemini_path()),
        ("ws://localhost:9000/", "ws://localhost:9000" + gemini_path()),
        (
            "ws://[::1]:9000/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent",
            "ws://[::1]:9000/ws/google.cloud.aiplatform.v1beta1.LlmBidiService/BidiGenerateContent",
        ),
        ("wss://live.example.org/proxy", "wss://live.example.org/proxy" + gemini_path()),
    ],
)
def test_custom_urls(url: str, expected: str) -> None:
    t = resolve(replace(LIVE, endpoint=url), KEY)
    assert t.kind == "custom" and t.endpoint.url == expected
    assert t.api == ("vertex" if "LlmBidiService" in url else "gemini")


@pytest.mark.parametrize(
    "url",
    ["ws://192.0.2.1:9000", "ws://example.com/ws/x", "ws://10.0.0.2", "ws://127.0.0.1.example.com"],
)
def test_plain_ws_is_for_loopback_only(url: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(replace(LIVE, endpoint=url), KEY)
    assert info.value.key == "live.endpoint" and "loopback" in str(info.value)


def test_a_key_in_the_url_query_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(replace(LIVE, endpoint="wss://h.example/ws/x?key=AIzaLEAK"), None)
    assert "AIzaLEAK" not in str(info.value)


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("192.168.1.2") and not is_loopback("example.com")


def test_vertex_express_mode_uses_the_key_and_the_global_host() -> None:
    t = resolve(replace(LIVE, endpoint="vertex"), KEY)
    assert t.api == "vertex" and t.endpoint.url == vertex_url("global")
    assert dict(t.endpoint.headers) == {"x-goog-api-key": "AIzaSyEXAMPLEKEY"}
    assert t.model == "publishers/google/models/gemini-3.8-live"


def test_vertex_with_google_credentials_sends_a_bearer_token_and_a_full_model_name() -> None:
    creds = Credentials(
        token="ya29.TOKEN",
        expiry=datetime.datetime.utcnow() + datetime.timedelta(hours=1),
        quota_project_id="billing-proj",
    )
    live = replace(LIVE, endpoint="vertex", project="my-proj", location="europe-west4")
    t = resolve(live, None, credentials=creds)
    assert t.endpoint.url == (
        "wss://europe-west4-aiplatform.googleapis.com/ws/google.cloud."
        "aiplatform.v1beta1.LlmBidiService/BidiGenerateContent"
    )
    assert dict(t.endpoint.headers) == {
        "Authorization": "Bearer ya29.TOKEN",
        "x-goog-user-project": "billing-proj",
    }
    assert "ya29" not in repr(t)
    assert t.model == (
        "projects/my-proj/locations/europe-west4/publishers/google/models/gemini-3.8-live"
    )


def test_vertex_without_key_or_project_names_the_project() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(replace(LIVE, endpoint="vertex"), None)
    assert info.value.key == "live.project"


@pytest.mark.parametrize(
    "location,host",
    [
        ("us", "aiplatform.us.rep.googleapis.com"),
        ("eu", "aiplatform.eu.rep.googleapis.com"),
        ("global", "aiplatform.googleapis.com"),
        ("us-central1", "us-central1-aiplatform.googleapis.com"),
    ],
)
def test_vertex_hosts(location: str, host: str) -> None:
    assert vertex_url(location).startswith(f"wss://{host}/ws/google.cloud.aiplatform.v1beta1.")
