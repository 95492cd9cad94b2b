"""`clustermon agent`: the command (a plain click command, so that `clustermon` can offer it
without importing the server, and `python -m collector.agent` runs it alone)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePath, PurePosixPath, PureWindowsPath
from urllib.parse import urlsplit

import click
import httpx

from collector.agent import keyfile
from collector.agent.runner import Agent, Settings
from collector.agent.sender import USER_AGENT, ClustermonApi, Delivery, Refused
from collector.agent.spool import MIN_MAX_BYTES, Spool

log = logging.getLogger("clustermon.agent")

TOKEN_VARIABLE = "CLUSTERMON_AGENT_TOKEN"
DEFAULT_SPOOL_MAX_BYTES = 16 * 1024 * 1024  # about six days of heartbeats at a 30 s period
SPOOL_FILE = "agent-spool.jsonl"
EXIT_REFUSED = 3  # clustermon refused the token: stopping is the point, a supervisor must see it
EXIT_NOT_ALL_DELIVERED = 75  # --once: EX_TEMPFAIL, heartbeats wait in the spool


def default_spool_path(windows: bool, environ: Mapping[str, str], home: PurePath) -> PurePath:
    """Where the spool lives unless --spool says: the user's local application data on
    Windows, systemd's StateDirectory when the unit has one, else the XDG state folder."""
    if windows:
        local = environ.get("LOCALAPPDATA")
        base = PureWindowsPath(local) if local else PureWindowsPath(home) / "AppData" / "Local"
        return base / "clustermon" / SPOOL_FILE
    state_directory = environ.get("STATE_DIRECTORY")  # systemd, StateDirectory=
    if state_directory:
        return PurePosixPath(state_directory.split(":")[0]) / SPOOL_FILE
    state = environ.get("XDG_STATE_HOME")
    base_posix = PurePosixPath(state) if state else PurePosixPath(home) / ".local" / "state"
    return base_posix / "clustermon" / SPOOL_FILE


def default_health_url(product: str | None) -> str:
    port = keyfile.DEFAULT_PORTS.get(product or "ProGet", keyfile.DEFAULT_PORTS["ProGet"])
    return f"http://localhost:{port}"


def health_endpoint(base: str) -> str:
    base = base.rstrip("/")
    return base if base.endswith("/health") else base + "/health"


@click.command(
    "agent",
    help="Run on a ProGet, BuildMaster or Otter server: post this server's heartbeats to"
    " clustermon every heartbeat period, with its OS, IP and the SHA-256 fingerprint of the"
    " product's EncryptionKey (the key never leaves the machine). Heartbeats that cannot be"
    f" delivered wait in a local spool. The agent token comes from {TOKEN_VARIABLE}.",
)
@click.option(
    "--url",
    envvar="CLUSTERMON_URL",
    required=True,
    help="clustermon's base address, e.g. https://clustermon.example:8000 (env CLUSTERMON_URL).",
)
@click.option(
    "--server",
    default=socket.gethostname,
    show_default="this machine's host name",
    help="The name this server has in the cluster.",
)
@click.option(
    "--health-url",
    default=None,
    help="The local product's base address; /health is appended. Default: http://localhost"
    " on the product's default port (ProGet 8624, BuildMaster 8622, Otter 8626), by the"
    " configuration file found; 8624 when none is.",
)
@click.option(
    "--health-insecure",
    is_flag=True,
    help="Do not verify the local product's TLS certificate (a self-signed one on localhost).",
)
@click.option(
    "--config-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The product's configuration file holding <EncryptionKey> (or a file holding only the"
    " key, e.g. a Docker secret). Default: the <PRODUCT>_ENCRYPTION_KEY(_FILE) variables, then"
    r" %PROGRAMDATA%\Inedo\SharedConfig\<Product>.config (Windows) or"
    " /usr/share/Inedo/SharedConfig/<Product>.config.",
)
@click.option(
    "--spool",
    "spool_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=r"The spool file. Default: %LOCALAPPDATA%\clustermon\agent-spool.jsonl (Windows),"
    " $STATE_DIRECTORY (systemd) or ~/.local/state/clustermon/agent-spool.jsonl.",
)
@click.option(
    "--spool-max-bytes",
    type=click.IntRange(min=MIN_MAX_BYTES),
    default=DEFAULT_SPOOL_MAX_BYTES,
    show_default=True,
    help="The most the spool keeps; when full, the oldest heartbeats are dropped (counted and"
    " logged).",
)
@click.option(
    "--period",
    type=click.IntRange(1, 3600),
    default=None,
    help="Heartbeat period in seconds. Default: the cluster's heartbeat_frequency_seconds,"
    " read from GET /api/v1/cluster/configuration now and then (30 s while it cannot be read).",
)
@click.option(
    "--once",
    is_flag=True,
    help=f"One cycle then exit (cron, checks): 0 when all was delivered,"
    f" {EXIT_NOT_ALL_DELIVERED} when heartbeats wait in the spool.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every heartbeat and delivery.")
def agent(
    url: str,
    server: str,
    health_url: str | None,
    health_insecure: bool,
    config_file: Path | None,
    spool_path: Path | None,
    spool_max_bytes: int,
    period: int | None,
    once: bool,
    verbose: bool,
) -> None:
    _configure_logging(verbose)
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    if not token:
        raise click.UsageError(
            f"set {TOKEN_VARIABLE} to an agent token (clustermon token create --role agent"
            " --name NAME); it is never a command-line option, where process lists show it"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter("must be an http:// or https:// address", param_hint="--url")
    server = server.strip()
    if not 1 <= len(server) <= 200:
        raise click.BadParameter("must be 1 to 200 characters", param_hint="--server")
    if health_url is None:
        health_url = default_health_url(_product_found(config_file))
    spool_path = spool_path or Path(default_spool_path(os.name == "nt", os.environ, Path.home()))
    settings = Settings(url, server, health_endpoint(health_url), config_file, period)
    try:
        spool = Spool.open(spool_path, spool_max_bytes)
    except OSError as exc:
        raise click.ClickException(f"cannot open the spool {spool_path}: {exc}") from None
    api = ClustermonApi(url, token)
    health_client = httpx.Client(
        timeout=httpx.Timeout(10.0, connect=5.0),
        verify=not health_insecure,
        trust_env=False,  # the local product is never behind the machine's proxy
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )
    runner = Agent(
        settings, spool, api, Delivery(spool, api), health_client, monotonic=time.monotonic
    )
    log.info(
        "clustermon agent for %s: heartbeats to %s, local health %s, spool %s (%d waiting)",
        server,
        url,
        settings.health_url,
        spool_path,
        len(spool),
    )
    code = 0
    try:
        if once:
            code = runner.run_once()
        else:
            stop = threading.Event()
            with _stopped_by_signals(stop):
                runner.run(stop.is_set, stop.wait)
    except Refused as refused:
        code = EXIT_REFUSED
        _say_refused(refused, spool)
    except KeyboardInterrupt:
        pass  # a second Ctrl-C, or one before the handlers were in place: stop all the same
    finally:
        spool.close()
        api.close()
        health_client.close()
    log.info(
        "agent stopped: %d heartbeats made, %d delivered, %d dropped; %d wait in %s",
        runner.made,
        runner.delivery.delivered,
        spool.dropped,
        len(spool),
        spool_path,
    )
    if code:
        sys.exit(code)


def main() -> None:
    """`python -m collector.agent`: the command alone."""
    agent(prog_name="clustermon agent")


def _product_found(config_file: Path | None) -> str | None:
    try:
        return keyfile.find(config_file).product
    except keyfile.KeyNotFound:
        return None  # said again, as an error, at the first heartbeat


@contextlib.contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM (systemd, docker stop), Ctrl-C and Ctrl-Break (a Windows console, and what NSSM
    or WinSW send to stop a service) all end the loop between two steps: nothing is cut
    mid-write, the spool is closed, and the exit code is 0."""

    def handler(signum, frame):
        log.info("stopping (signal %s)", signal.Signals(signum).name)
        stop.set()

    names = ("SIGTERM", "SIGINT", "SIGBREAK")  # SIGBREAK exists on Windows only
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in names:
            number = getattr(signal, name, None)
            if number is not None:
                previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def _say_refused(refused: Refused, spool: Spool) -> None:
    what = "does not know the token" if refused.status == 401 else "refuses this token"
    message = (
        f"\n{'!' * 72}\nclustermon {what} ({refused.status}: {refused.detail}).\n"
        f"The agent stops: retrying cannot help. {len(spool)} heartbeats stay in the spool"
        f" ({spool.path}) and are sent once a valid agent token is set in {TOKEN_VARIABLE}"
        " (clustermon token create --role agent --name NAME; a bound token must cover"
        f" --server).\n{'!' * 72}"
    )
    log.critical("%s", message)


def _configure_logging(verbose: bool) -> None:
    """The agent's own logger, to stderr (a service manager collects it), whatever the host
    program did with the root logger."""
    log.setLevel(logging.DEBUG if verbose else logging.INFO)
    for old in [h for h in log.handlers if getattr(h, "clustermon_agent", False)]:
        log.removeHandler(old)  # run again in one process: write to today's stderr
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    handler.clustermon_agent = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.propagate = False
