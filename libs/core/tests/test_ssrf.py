"""Webhook targets: no loopback, private, link-local or reserved addresses unless allowed."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from genstack.core.ssrf import UnsafeUrlError, UrlPolicy


def check(url: str, allow: list[str] | None = None) -> str:
    target = asyncio.run(UrlPolicy(allow).check(url))
    return str(target.address)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1.2.3:8080/hook",
        "http://localhost/hook",
        "http://10.0.0.1/hook",
        "http://172.16.5.4/hook",
        "http://192.168.1.10/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hook",
        "http://0.0.0.0/hook",
        "http://[::1]/hook",
        "http://[fe80::1]/hook",
        "http://[fc00::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://224.0.0.1/hook",
    ],
)
def test_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError, match="address"):
        check(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://8.8.8.8/x", "http and https"),
        ("file:///etc/passwd", "http and https"),
        ("http://user:pw@8.8.8.8/x", "credentials"),
        ("http:///x", "no host"),
        ("http://8.8.8.8:99999/x", "not a valid URL"),
        ("http://" + "a" * 3000 + ".com/", "longer"),
        ("http://no-such-host.invalid/x", "cannot be resolved"),
    ],
)
def test_malformed_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeUrlError, match=reason):
        check(url)


def test_global_addresses_pass() -> None:
    assert check("https://8.8.8.8/hook") == "8.8.8.8"
    assert check("http://[2001:4860:4860::8888]:8443/x") == "2001:4860:4860::8888"


def test_allowed_networks_open_exactly_themselves() -> None:
    assert check("http://127.0.0.1:9000/hook", ["127.0.0.0/8"]) == "127.0.0.1"
    assert check("http://localhost:9000/hook", ["127.0.0.0/8", "::1/128"]) in {"127.0.0.1", "::1"}
    with pytest.raises(UnsafeUrlError):
        check("http://10.0.0.1/hook", ["127.0.0.0/8"])


def test_pinned_url_connects_to_the_checked_address_with_the_original_host() -> None:
    target = asyncio.run(UrlPolicy(["127.0.0.0/8"]).check("http://127.0.0.1:9000/a/b?c=1"))
    assert target.pinned_url() == "http://127.0.0.1:9000/a/b?c=1"
    assert target.host_header == "127.0.0.1:9000"
    v6 = asyncio.run(UrlPolicy().check("https://[2001:4860::1]/x"))
    assert v6.pinned_url() == "https://[2001:4860::1]:443/x"
    assert v6.host_header == "[2001:4860::1]"
    assert ipaddress.ip_address(v6.address).version == 6


def test_the_sync_check_refuses_alike_and_names_the_policys_variable() -> None:
    policy = UrlPolicy(allow_variable="COMFYUI_INPUT_ALLOW_NETWORKS")
    with pytest.raises(UnsafeUrlError, match="COMFYUI_INPUT_ALLOW_NETWORKS"):
        policy.check_sync("http://localhost:8188/x.png")
    allowed = UrlPolicy(["127.0.0.0/8"]).check_sync("http://127.0.0.1:9/x.png")
    assert allowed.address == ipaddress.ip_address("127.0.0.1")
    assert allowed.host_header == "127.0.0.1:9"
