"""genstack.http on a tiny app: OpenAI's error shape for every kind of failure, bearer auth
with open paths and signed links, body limits, request ids, metrics and readiness. In
process (Starlette's TestClient over the ASGI interface); ``test_edge_served.py`` repeats
the parts that depend on a real server over uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from edge_app import BODY_LIMIT, KEY, SeenRequests, build_app
from fastapi.testclient import TestClient

AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def metrics() -> SeenRequests:
    return SeenRequests()


@pytest.fixture
def client(metrics: SeenRequests) -> Iterator[TestClient]:
    with TestClient(build_app(metrics), raise_server_exceptions=False) as test_client:
        yield test_client


def openai_error(response: httpx.Response, status: int, code: str | None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    assert error["code"] == code
    return dict(error)


def test_a_missing_key_and_a_wrong_key_are_told_apart(client: TestClient) -> None:
    missing = openai_error(client.post("/orders", json={}), 401, "missing_api_key")
    wrong = openai_error(
        client.post("/orders", json={}, headers={"Authorization": "Bearer nope"}),
        401,
        "invalid_api_key",
    )
    assert missing["type"] == wrong["type"] == "invalid_request_error"
    for response in (client.get("/orders"), client.get("/orders", headers={"Authorization": "x"})):
        assert response.headers["www-authenticate"] == 'Bearer realm="genstack"'


def test_the_key_id_reaches_the_route_and_never_the_key(client: TestClient) -> None:
    answer = client.post("/orders", json={"item": "tea", "qty": 2}, headers=AUTH).json()
    assert answer["qty"] == 2
    assert answer["key_id"] and KEY not in answer["key_id"]


def test_open_paths_signed_links_and_preflights_need_no_key(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics").status_code == 200  # open by this app's policy
    assert client.get("/openapi.json").status_code == 401  # docs closed by it
    assert client.get("/files/a.wav", params={"signature": "abc"}).status_code == 200
    openai_error(client.get("/files/a.wav"), 401, "missing_api_key")
    # A key that is sent is checked, signed link or not.
    wrong = {"Authorization": "Bearer nope"}
    openai_error(
        client.get("/files/a.wav", params={"signature": "abc"}, headers=wrong),
        401,
        "invalid_api_key",
    )
    preflight = client.options(
        "/orders",
        headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "http://example.test"


def test_no_keys_means_no_auth() -> None:
    with TestClient(build_app(auth=False)) as open_client:
        assert open_client.post("/orders", json={"item": "x", "qty": 1}).status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"item": "tea", "qty": 11}, "qty"),
        ({"item": "", "qty": 1}, "item"),
        ({"qty": 1}, "item"),
        ({"item": "tea", "qty": 1, "address": {"city": "X"}}, "address.city"),
    ],
)
def test_invalid_values_are_400_naming_the_field(
    client: TestClient, body: dict[str, Any], param: str
) -> None:
    error = openai_error(client.post("/orders", json=body, headers=AUTH), 400, "invalid_value")
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert param in error["message"]


def test_bad_json_and_non_json_bodies(client: TestClient) -> None:
    broken = client.post(
        "/orders", content=b"{nope", headers={**AUTH, "content-type": "application/json"}
    )
    openai_error(broken, 400, "invalid_json")
    form = client.post("/orders", data={"item": "tea"}, headers=AUTH)
    assert "application/json" in openai_error(form, 400, "invalid_content_type")["message"]
    # A route that reads a form is not told to send JSON: its field is named.
    too_long = client.post("/form", data={"name": "abcdefgh"}, headers=AUTH)
    assert openai_error(too_long, 400, "invalid_value")["param"] == "name"


def test_api_errors_unknown_routes_methods_and_crashes(client: TestClient) -> None:
    busy = client.get("/teapot", headers=AUTH)
    error = openai_error(busy, 409, "pot_busy")
    assert error["param"] == "pot" and busy.headers["retry-after"] == "3"
    assert openai_error(client.get("/nowhere", headers=AUTH), 404, "not_found")["type"] == (
        "invalid_request_error"
    )
    openai_error(client.delete("/orders", headers=AUTH), 405, "method_not_allowed")
    crash = openai_error(client.get("/crash", headers=AUTH), 500, "internal_error")
    assert crash["type"] == "server_error"
    assert "boom" not in crash["message"]  # the log has it, not the client


def test_a_declared_body_over_the_limit_is_413_before_the_route(client: TestClient) -> None:
    big = b"x" * (BODY_LIMIT + 1)
    error = openai_error(
        client.post("/orders", content=big, headers=AUTH), 413, "request_too_large"
    )
    assert str(BODY_LIMIT) in error["message"]
    # Limits go by method and path prefix: /upload takes more.
    assert client.post("/upload", content=big, headers=AUTH).json() == {"bytes": BODY_LIMIT + 1}


def test_request_ids_are_echoed_or_made(client: TestClient) -> None:
    echoed = client.get("/request-id", headers={**AUTH, "X-Request-Id": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    assert echoed.json() == {"id": "abc-123"}
    made = client.get("/request-id", headers={**AUTH, "X-Request-Id": "bad id\twith spaces"})
    assert made.headers["x-request-id"] != "bad id\twith spaces"
    assert made.json() == {"id": made.headers["x-request-id"]}
    # Refusals carry one too.
    assert client.get("/request-id").headers["x-request-id"]


def test_metrics_see_route_templates_and_every_status(
    client: TestClient, metrics: SeenRequests
) -> None:
    client.get("/files/a.wav", headers=AUTH)
    client.get("/files/b.wav")
    client.get("/crash", headers=AUTH)
    client.get("/nowhere", headers=AUTH)
    assert metrics.seen == [
        ("GET", "/files/{name}", 200),
        ("GET", "unmatched", 401),  # refused before routing
        ("GET", "/crash", 500),
        ("GET", "unmatched", 404),
    ]


def test_readiness_is_503_with_the_failing_check(client: TestClient) -> None:
    assert client.get("/readyz").json() == {"ready": True, "checks": {"thing": "ok", "other": "ok"}}
    down = client.get("/readyz", params={"broken": "true"})
    assert down.status_code == 503
    assert down.json() == {"ready": False, "checks": {"thing": "down", "other": "ok"}}
