"""Channel URLs: what kind a URL is, what people see of it (never a secret), which are refused."""

from __future__ import annotations

import pytest

from notify.urls import check, kind_of, masked_target


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("https://hooks.example/clustermon", "webhook"),
        ("HTTP://hooks.example/x", "webhook"),
        ("mailto://ops:pw@mail.example", "mailto"),
        ("slack://TokenA/TokenB/TokenC/#ops", "slack"),
        ("json://receiver.example/hook", "json"),
    ],
)
def test_http_is_our_webhook_and_any_other_scheme_is_named_by_it(url, kind):
    assert kind_of(url) == kind


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.example/clustermon", "https://hooks.example/***"),
        ("https://hooks.example", "https://hooks.example"),
        ("https://hooks.example/", "https://hooks.example"),
        (
            "http://bot:S3cret@hooks.example:8080/T0/B0/XyZ?token=abc",
            "http://***@hooks.example:8080/***?***",
        ),
        ("https://[::1]:9000/hook", "https://[::1]:9000/***"),
    ],
)
def test_a_webhook_shows_only_its_host_and_port(url, shown):
    assert masked_target(url) == shown


def test_apprises_generic_webhooks_are_masked_as_ours():
    shown = masked_target("json://user:pw@receiver.example:8080/hooks/S3cretPath?x=1")
    assert shown == "json://***@receiver.example:8080/***?***"


@pytest.mark.parametrize(
    ("url", "secrets"),
    [
        ("mailto://ops:Pa55word@mail.example", ["Pa55word"]),
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#ops", ["TIiajkdnlazkcOXrIdevi7FQ"]),
        ("tgram://123456789:AAHsecretBotToken/987654", ["AAHsecretBotToken"]),
    ],
)
def test_an_apprise_url_takes_apprises_privacy_form(url, secrets):
    shown = masked_target(url)
    assert shown.startswith(kind_of(url) + "://")
    for secret in secrets:
        assert secret not in shown
    assert "overflow=" not in shown and "retry=" not in shown  # Apprise's tuning, not the address


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("hooks.example/clustermon", "not a URL"),
        ("https:///path-only", "needs a host"),
        ("nosuchservice://x", "Apprise cannot use"),
        ("mailto://", "Apprise cannot use"),
    ],
)
def test_urls_neither_we_nor_apprise_can_use_are_refused_with_a_reason(url, why):
    message = check(url)
    assert message is not None and why in message
    assert masked_target(url) == "***"


@pytest.mark.parametrize(
    "url", ["https://hooks.example/x", "mailto://ops:pw@mail.example", "json://h.example/p"]
)
def test_usable_urls_pass_the_check(url):
    assert check(url) is None
