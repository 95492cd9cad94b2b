"""Channel URLs as the API takes and shows them: their kind, a masked form, a validity check.

A channel URL is a credential more often than not: a webhook's secret path
(`https://hooks.slack.com/services/T0/B0/XXXX`), a mail password (`mailto://me:pw@host`), a bot
token (`tgram://123:abc/…`). People see `masked_target(url)`; only the sender, after unsealing,
sees the URL itself (notify/secrets.py).

http and https are clustermon's own JSON webhook, checked and masked here; any other scheme is
handed to Apprise, which knows each of its services' URL shapes, so it parses them and says
which parts are secret (`url(privacy=True)`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from notify.apprise_loader import apprise

MASK = "***"
WEBHOOK = "webhook"
_WEBHOOK_SCHEMES = ("http", "https")
# Apprise's own generic webhooks: like ours, their path and query are often the secret, which
# Apprise's privacy form keeps; they are masked as ours are.
_GENERIC_WEBHOOKS = ("json", "jsons", "xml", "xmls", "form", "forms")


def _scheme(url: str) -> str:
    scheme, sep, _ = url.partition("://")
    return scheme.lower() if sep else ""


def kind_of(url: str) -> str:
    """ "webhook" for http/https (our own JSON webhook), else the Apprise scheme ("mailto",
    "slack", "json", ...)."""
    scheme = _scheme(url)
    return WEBHOOK if scheme in _WEBHOOK_SCHEMES else scheme


def check(url: str) -> str | None:
    """Why `url` cannot be a channel (None: it can). Nothing is contacted."""
    scheme = _scheme(url)
    if not scheme:
        return "not a URL: expected scheme://… (https://… or an Apprise URL such as mailto://…)"
    if scheme in _WEBHOOK_SCHEMES:
        try:
            host = urlsplit(url).hostname
        except ValueError as exc:
            return f"not a valid URL: {exc}"
        return None if host else "an http(s) webhook URL needs a host"
    if _apprise_plugin(url) is None:
        return (
            f"Apprise cannot use this {scheme}:// URL: unknown scheme or missing parts "
            "(see https://github.com/caronc/apprise/wiki for each service's URL)"
        )
    return None


def masked_target(url: str) -> str:
    """`url` with its secrets masked, for people. A webhook (ours, or Apprise's json://, xml://,
    form://) keeps only its scheme, host and port (its path and query are often the secret
    itself, and a password is never shown); any other Apprise URL takes Apprise's privacy
    form. A URL neither can parse is masked whole."""
    scheme = _scheme(url)
    if scheme in _WEBHOOK_SCHEMES:
        return _masked_webhook(url)
    plugin = _apprise_plugin(url)
    if plugin is None:
        return MASK
    if scheme in _GENERIC_WEBHOOKS:
        return _masked_webhook(url)
    return _without_apprise_settings(str(plugin.url(privacy=True)))


# Settings Apprise writes into every URL it shows (delivery tuning, not the address): left out
# so that people see the address they configured.
_APPRISE_SETTINGS = {
    "overflow",
    "retry",
    "wait",
    "optional",
    "cto",
    "rto",
    "format",
    "verify",
    "emojis",
    "tz",
    "store",
}


def _without_apprise_settings(shown: str) -> str:
    base, sep, query = shown.partition("?")
    if not sep:
        return shown
    kept = [p for p in query.split("&") if p.partition("=")[0] not in _APPRISE_SETTINGS]
    return f"{base}?{'&'.join(kept)}" if kept else base


def _masked_webhook(url: str) -> str:
    try:
        parts = urlsplit(url)
        host, port, user = parts.hostname, parts.port, parts.username
    except ValueError:
        return MASK
    if not host:
        return MASK
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc = f"{netloc}:{port}"
    if user is not None:
        netloc = f"{MASK}@{netloc}"  # a user name may be the token itself (basic auth keys)
    shown = f"{parts.scheme.lower()}://{netloc}"
    if parts.path not in ("", "/"):
        shown += "/" + MASK
    if parts.query:
        shown += "?" + MASK
    return shown


def _apprise_plugin(url: str):
    """Apprise's plugin object for `url`, or None when Apprise cannot use it. Apprise logs
    why at warning level; its own logger, which we leave as configured."""
    try:
        return apprise.Apprise.instantiate(url, suppress_exceptions=True)
    except Exception:  # any parse failure means "cannot use it"
        return None
