"""A target URL as people see it (domain/urls.py): passwords and tokens masked, the rest exactly
as the admin wrote it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.urls import MASK, masked, secret_name


@pytest.mark.parametrize(
    "url",
    [
        "https://proget01:8624",
        "http://10.0.0.5/",
        "https://proget01.corp.example/prefix/?region=eu&page=2",
        "http://monitor@proget01",  # a user name alone is not a secret
        "https://[fe80::1]:8624/",
        "http://h/?monkey=1&author=me&signal=3",  # words that only contain a secret word
        "http://h/?token=",  # nothing to hide
    ],
)
def test_a_url_without_secrets_is_shown_exactly_as_written(url):
    assert masked(url) == url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://monitor:pa55@proget01:8624/", "https://monitor:***@proget01:8624/"),
        ("https://:pa55@proget01/", "https://:***@proget01/"),
        # a password with an @ in it: the host is after the last @
        ("https://monitor:p@ss@proget01/", "https://monitor:***@proget01/"),
        ("http://h/?api_key=K&x=1", "http://h/?api_key=***&x=1"),
        ("http://h/?apikey=K", "http://h/?apikey=***"),
        ("http://h/?X-ApiKey=K", "http://h/?X-ApiKey=***"),
        ("http://h/?accessToken=T;keyId=3", "http://h/?accessToken=***;keyId=***"),
        ("http://h/?sv=2024&sig=abc%2Bdef&se=1", "http://h/?sv=2024&sig=***&se=1"),
        (
            "http://h/?X-Amz-Signature=s&X-Amz-Credential=c",
            "http://h/?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        (
            "http://h/?client_secret=s&PASSWORD=p&auth=a",
            "http://h/?client_secret=***&PASSWORD=***&auth=***",
        ),
        ("http://h/#access_token=abc&state=1", "http://h/#access_token=***&state=1"),
        ("http://h/?my%5Ftoken=abc", "http://h/?my%5Ftoken=***"),  # an encoded name
    ],
)
def test_secrets_are_masked_and_the_rest_kept(url, shown):
    assert masked(url) == shown


def test_a_url_that_cannot_be_parsed_is_masked_whole():
    assert masked("http://[::1:8624/?token=abc") == MASK


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("token", True),
        ("access_token", True),
        ("refreshToken", True),
        ("key", True),
        ("api-key", True),
        ("sig", True),
        ("Authorization", True),
        ("auth", True),
        ("author", False),
        ("password", True),
        ("region", False),
        ("monkey", False),
        ("keyboard", False),
        ("page", False),
    ],
)
def test_which_parameter_names_hold_secrets(name, secret):
    assert secret_name(name) is secret


@given(
    password=st.text(
        alphabet=st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="/?#@[]\\"),
        min_size=1,
        max_size=30,
    ),
    token=st.text(alphabet="abcdefXYZ0123456789-_.~%", min_size=1, max_size=30),
)
def test_no_password_or_token_survives(password, token):
    url = f"https://monitor:{password}@proget01:8624/x?region=eu&token={token}"
    shown = masked(url)
    assert shown == "https://monitor:***@proget01:8624/x?region=eu&token=***"
