"""One poll against real local HTTP(S) servers (collector/fake_product.py): what each answer a
real product server or its proxy can give becomes, worded as the operator reads it."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time

import orjson
import pytest
import trustme

from collector import probe
from collector.fake_product import Answer, FakeProducts, example, serve_in_thread, target_url

STACK_TRACE = (
    b"System.InvalidOperationException: Sequence contains no elements\r\n"
    b"   at System.Linq.ThrowHelper.ThrowNoElementsException()\r\n"
    b"   at Inedo.ProGet.WebApplication.Health.HealthHandler.ProcessRequest()\r\n"
)
LOGIN_PAGE = (
    b"<!DOCTYPE html><html><head><title>Sign in - Corp SSO</title></head>"
    b"<body><form action='/login'>...</form></body></html>"
)


@pytest.fixture
def fakes():
    products = FakeProducts(["proget01", "proget02"])
    base, stop = serve_in_thread(products)
    products.base = base  # type: ignore[attr-defined]
    yield products
    stop()


def poll(url: str, timeout: float = 2.0, verify: ssl.SSLContext | bool | None = None):
    async def run():
        context = probe.tls_context() if verify is None else verify
        async with probe.client(context, 4) as http:
            return await probe.probe(http, url, timeout)

    return asyncio.run(run())


def url_of(fakes, name="proget01") -> str:
    return target_url(fakes.base, name)


def test_the_documented_example_is_a_health_document(fakes):
    outcome = poll(url_of(fakes))
    assert outcome.ok and outcome.kind is None and outcome.detail is None
    assert outcome.document == example("ProGet")
    assert fakes.user_agents["proget01"].startswith("clustermon-collector/")


def test_a_trailing_slash_in_the_target_url_is_fine(fakes):
    assert poll(url_of(fakes) + "/").ok


def test_a_500_with_a_stack_trace_names_its_first_line(fakes):
    fakes.answer("proget01", Answer(500, STACK_TRACE, "text/plain"))
    outcome = poll(url_of(fakes))
    assert (outcome.kind, outcome.detail) == (
        "http_status",
        "HTTP 500: System.InvalidOperationException: Sequence contains no elements",
    )


def test_an_error_page_in_html_is_named_by_its_title(fakes):
    fakes.answer("proget01", Answer(401, LOGIN_PAGE, "text/html"))
    outcome = poll(url_of(fakes))
    assert (outcome.kind, outcome.detail) == ("http_status", "HTTP 401: Sign in - Corp SSO")


def test_an_empty_error_answer_gives_the_reason_phrase(fakes):
    fakes.answer("proget01", Answer(503, b"", "text/plain"))
    assert poll(url_of(fakes)).detail == "HTTP 503: Service Unavailable"


def test_a_login_page_from_a_reverse_proxy_is_not_health(fakes):
    fakes.answer("proget01", Answer(200, LOGIN_PAGE, "text/html"))
    outcome = poll(url_of(fakes))
    assert outcome.kind == "not_health"
    assert outcome.detail.startswith("not a health document: not JSON: '<!DOCTYPE html><html>")


def test_a_200_that_is_not_json_or_other_json_is_not_health(fakes):
    fakes.answer("proget01", Answer(200, b"OK", "text/plain"))
    assert poll(url_of(fakes)).detail == "not a health document: not JSON: 'OK'"
    fakes.answer("proget01", Answer(200, orjson.dumps({"status": "UP"})))
    outcome = poll(url_of(fakes))
    assert outcome.kind == "not_health"
    assert outcome.detail == 'JSON but not a health document: \'{"status":"UP"}\''


def test_a_slow_answer_times_out_after_the_targets_timeout(fakes):
    fakes.answer("proget01", Answer(body=orjson.dumps(example()), delay=5))
    started = time.monotonic()
    outcome = poll(url_of(fakes), timeout=0.3)
    assert (outcome.kind, outcome.detail) == ("timeout", "timed out after 0.3 s")
    assert time.monotonic() - started < 2


def test_the_timeout_bounds_the_whole_request_even_while_the_body_trickles(fakes):
    # Each piece arrives well within the timeout; the whole body would take 2 s.
    fakes.answer("proget01", Answer(body=orjson.dumps(example()), drip=0.2))
    started = time.monotonic()
    outcome = poll(url_of(fakes), timeout=0.5)
    assert (outcome.kind, outcome.detail) == ("timeout", "timed out after 0.5 s")
    assert time.monotonic() - started < 1.5


def test_a_closed_port_is_refused():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    outcome = poll(f"http://127.0.0.1:{port}")
    assert (outcome.kind, outcome.detail) == ("refused", "connection refused")


def test_a_server_hanging_up_without_an_answer_is_said_so(fakes):
    fakes.answer("proget01", Answer(hang_up=True))
    outcome = poll(url_of(fakes))
    assert (outcome.kind, outcome.detail) == (
        "refused",
        "the server closed the connection without an answer",
    )


def test_an_unknown_name_is_a_dns_failure():
    outcome = poll("http://proget01.clustermon-test.invalid:8624")
    assert (outcome.kind, outcome.detail) == ("dns", "name not found")


def test_a_redirect_to_the_same_host_is_followed(fakes):
    fakes.answer("proget01", Answer(302, headers=(("Location", "/proget02/health"),)))
    assert poll(url_of(fakes)).ok


def test_a_redirect_to_another_host_is_refused_without_showing_its_path(fakes):
    port = fakes.base.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}/sso/login?token=s3cret"
    fakes.answer("proget01", Answer(302, headers=(("Location", elsewhere),)))
    outcome = poll(url_of(fakes))
    assert outcome.kind == "http_status"
    assert outcome.detail == (
        f"HTTP 302: redirect to http://localhost:{port} refused (only the same host is followed)"
    )
    assert "s3cret" not in outcome.detail


def test_more_than_three_redirects_are_refused(fakes):
    fakes.answer("proget01", Answer(307, headers=(("Location", "/proget01/health"),)))
    assert poll(url_of(fakes)).detail == "HTTP 307: more than 3 redirects"


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_answer_over_1_mb_is_refused(fakes, chunked):
    big = orjson.dumps({"applicationName": "ProGet", "padding": "x" * (2 << 20)})
    fakes.answer("proget01", Answer(200, big, chunked=chunked))
    outcome = poll(url_of(fakes))
    assert outcome.kind == "not_health"
    assert outcome.detail.startswith("not a health document: the answer is over 1 MB")


@pytest.fixture(scope="module")
def ca():
    return trustme.CA()


def _https(products: FakeProducts, context: ssl.SSLContext):
    base, stop = serve_in_thread(products, ssl_context=context)
    return target_url(base, products.names[0]), stop


def test_a_self_signed_certificate_fails_verification_unless_told_not_to(ca, tmp_path):
    # The CA's own certificate, served as the server's: self-signed.
    pem = tmp_path / "self-signed.pem"
    pem.write_bytes(ca.private_key_pem.bytes() + ca.cert_pem.bytes())
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pem)
    url, stop = _https(FakeProducts(["proget01"]), server)
    try:
        outcome = poll(url)
        assert (outcome.kind, outcome.detail) == (
            "tls",
            "certificate verify failed: self-signed certificate",
        )
        assert poll(url, verify=False).ok  # the target's verify_tls=false
    finally:
        stop()


def test_a_certificate_of_an_internal_ca_verifies_with_the_ca_bundle(ca, tmp_path):
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    url, stop = _https(FakeProducts(["proget01"]), server)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    try:
        outcome = poll(url)
        assert outcome.kind == "tls"
        assert outcome.detail == "certificate verify failed: unable to get local issuer certificate"
        assert poll(url, verify=probe.tls_context(str(bundle))).ok
    finally:
        stop()


def test_a_missing_ca_bundle_is_said_at_once(tmp_path):
    with pytest.raises(ValueError, match="cannot load the CA bundle"):
        probe.tls_context(str(tmp_path / "missing.pem"))
