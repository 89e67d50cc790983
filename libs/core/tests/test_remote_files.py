"""genstack.core.remote_files against a real HTTP server on loopback: a file fetched behind
the SSRF guard, and each way a URL is refused (address, redirect, status, type, size)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from genstack.core.remote_files import (
    InputError,
    InputFetcher,
    InputTooLargeError,
    UnsafeUrlError,
    file_name,
)
from genstack.core.ssrf import UrlPolicy
from genstack.testing.file_server import FileServer

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server() -> Iterator[FileServer]:
    files = FileServer().start()
    files.add("/cat.png", b"\x89PNG" + bytes(100))
    files.add("/big.bin", bytes(LIMIT + 1))
    files.add("/streamed.bin", bytes(LIMIT + 1))
    files.chunked.add("/streamed.bin")  # no Content-Length: cut off while it streams
    files.add("/empty.bin", b"")
    files.json_routes["/page.json"] = {"not": "an image"}
    files.redirects["/moved.png"] = "/cat.png"
    try:
        yield files
    finally:
        files.stop()


def fetcher(allow: list[str] | None = None) -> InputFetcher:
    policy = UrlPolicy(["127.0.0.1/32"] if allow is None else allow, allow_variable="X_ALLOW")
    return InputFetcher(policy, max_bytes=LIMIT, timeout_s=5, user_agent="genstack-test")


def test_a_file_is_fetched_from_the_checked_address(server: FileServer) -> None:
    fetched = fetcher().fetch(f"{server.url}/cat.png", "image", 2)
    assert fetched.data == server.files["/cat.png"]
    assert (fetched.name, fetched.content_type) == ("2-cat.png", "application/octet-stream")
    (seen,) = server.requests_for("/cat.png")
    assert seen.headers["user-agent"] == "genstack-test"
    assert seen.headers["host"] == f"127.0.0.1:{server.port}"


@pytest.mark.parametrize(
    ("path", "error", "fragment"),
    [
        ("/big.bin", InputTooLargeError, "larger than"),
        ("/streamed.bin", InputTooLargeError, "larger than"),
        ("/empty.bin", InputError, "is empty"),
        ("/page.json", InputError, "application/json, not image/*"),
        ("/moved.png", InputError, "redirects (302)"),
        ("/missing.png", InputError, "answered 404"),
    ],
)
def test_what_is_no_usable_file_is_an_input_error(
    server: FileServer, path: str, error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error) as raised:
        fetcher().fetch(f"{server.url}{path}", "image")
    assert fragment in str(raised.value)


def test_the_type_check_can_be_left_to_the_caller(server: FileServer) -> None:
    fetched = fetcher().fetch(f"{server.url}/page.json", "image", check_type=False)
    assert fetched.content_type == "application/json" and fetched.data.startswith(b"{")


def test_a_private_address_is_refused_before_any_connection(server: FileServer) -> None:
    server.clear()
    with pytest.raises(UnsafeUrlError, match="X_ALLOW"):
        fetcher(allow=[]).fetch(f"{server.url}/cat.png", "image")
    with pytest.raises(UnsafeUrlError):
        fetcher().fetch("http://127.0.0.2:9/cat.png", "image")  # loopback, not allowed
    assert server.requests_for("/cat.png") == []


def test_file_names_are_safe() -> None:
    assert file_name("https://example.com/a/b/My Photo (1).PNG?x=1", 0) == "0-My_Photo_1_.PNG"
    assert file_name("https://example.com/", 3) == "input-3"
    assert file_name("https://example.com/..%2F..%2Fetc", 1) == "1-etc"  # never a path
