"""clustermon's own version, as the installed package says (User-Agent of what we send)."""

from importlib import metadata


def user_agent(product: str = "clustermon") -> str:
    """`product/version` for the requests we make (polls, webhooks)."""
    try:
        version = metadata.version("clustermon")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        version = "dev"
    return f"{product}/{version}"
