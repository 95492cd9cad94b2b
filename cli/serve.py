"""`clustermon serve` and `clustermon run`: migrate, then serve with gunicorn (and, for run,
the scheduler and the demo agents as child processes)."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from importlib.util import find_spec

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import with_appcontext

import migrations
from api.services import services
from api.settings import DEFAULTS
from cli import laptop_tokens
from cli.database_wait import wait_for_database
from cli.processes import CLUSTERMON, SIMULATOR_TOKEN, spawn_scheduler

# Each worker listens on a socket of its own (SO_REUSEPORT) and Linux spreads new connections
# across them. On one shared socket whichever worker wakes first accepts, and agents' keep-alive
# connections stay where they landed: measured 16/0 splits of 16 connections between two
# workers, one core left idle (BENCHMARKS.md, "HTTP API", session 4). Linux only: on BSD and
# macOS the last socket bound takes every connection.
REUSE_PORT = sys.platform.startswith("linux")


def _serve(app: Flask, host: str, port: int, workers: int, threads: int = 8) -> None:
    """gunicorn on POSIX; the WSGI reference server where gunicorn cannot run."""
    try:
        from gunicorn.app.base import BaseApplication

        from api import gunicorn_config
        from api.gathering_worker import GatheringThreadWorker
    except ImportError:  # pragma: no cover - Windows
        from werkzeug.serving import run_simple

        run_simple(host, port, app, threaded=True)
        return

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            # gthread, but a thread serves a request only once it has arrived: slow clients
            # cannot hold every thread (api/gathering_worker.py).
            self.cfg.set("worker_class", "api.gathering_worker.GatheringThreadWorker")
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", None)
            self.cfg.set("reuse_port", REUSE_PORT)
            self.cfg.set("post_worker_init", gunicorn_config.post_worker_init)
            self.cfg.set("post_fork", gunicorn_config.post_fork)
            self.cfg.set("loglevel", gunicorn_config.loglevel)
            self.cfg.set("on_exit", gunicorn_config.on_exit)
            self.cfg.set("control_socket_disable", True)  # see _serve_gevent

        def load(self):
            return app

    GatheringThreadWorker.max_body = app.config["MAX_CONTENT_LENGTH"]
    Server().run()


def _serve_gevent(host: str, port: int, workers: int) -> None:
    """Replace this process with gunicorn's gevent workers serving `wsgi:app` (PostgreSQL).

    A request waiting for its group commit is then a greenlet, not a thread: no GIL hand-offs
    and futex wake-ups per waiting request, ~1.2 context switches per heartbeat instead of ~8,
    25-37% more heartbeats/s and 11-19% more healthz/s on the same machine (BENCHMARKS.md, "HTTP
    API", session 4). gevent must patch the standard library before anything creates a lock or
    imports psycopg (which picks its cooperative wait at import), so the app is imported afresh
    in each worker after gunicorn patched it: this process has imported it already, hence exec.
    SQLite stays on threads (`_serve`): its calls block and its write lock must not be held
    across a greenlet switch."""
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--worker-class=gevent",
            f"--workers={workers}",
            f"--bind={host}:{port}",
            *(["--reuse-port"] if REUSE_PORT else []),
            "--config=python:api.gunicorn_config",  # its server hooks
            # gunicorn 27's management socket is one path per user (~/.gunicorn/gunicorn.ctl),
            # which every other gunicorn of that user takes over; clustermon does not use it.
            "--no-control-socket",
            "wsgi:app",
        ],
    )


def _refuse_taken_port(host: str, port: int) -> None:
    """Fail when something already listens on host:port. With SO_REUSEPORT a second server
    would bind the same port and silently take a share of the connections; a probe without it
    conflicts with any listener (SO_REUSEADDR only lets it past closed connections' TIME_WAIT)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise click.ClickException(f"cannot serve on {host}:{port}: {reason}") from None


def _record_monitor_gap(app: Flask) -> None:
    """Before serving: if the whole service was down, record the gap now, so the components
    whose first heartbeats arrive before the scheduler is back get one full timeout instead of
    a flood of late timeouts (the scheduler will not record the same gap twice)."""
    from scheduler.gaps import resume_after_gap

    svc = services(app)
    resume_after_gap(
        svc.store,
        svc.clock(),
        config=svc.commands.configuration(),
        sweep_interval_seconds=float(app.config["SWEEP_INTERVAL_SECONDS"]),
        detector=f"api:{socket.gethostname()}:{os.getpid()}",
    )


def _shown(database_url: str) -> str:
    """The database URL without its password: terminals are shared and logged."""
    return sa.make_url(database_url).render_as_string(hide_password=True)


def _warn_of_the_default_secret(app: Flask, host: str) -> None:
    """Reachable from other machines with the development secret: say so. The secret keys
    what clustermon keeps encrypted (notification channels' URLs), and a default one known to
    everybody protects nothing."""
    if app.config["SECRET_KEY"] != DEFAULTS["SECRET_KEY"]:
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        click.echo(
            f"warning: serving on {host} with the development CLUSTERMON_SECRET_KEY; set a "
            "random one (python -c 'import secrets; print(secrets.token_urlsafe(32))')",
            err=True,
        )


def _prepare(app: Flask, host: str | None, port: int | None) -> tuple[str, int]:
    """What `serve` and `run` do before serving: the address (options, else settings), a port
    nobody else listens on, a database that answers and is migrated, the monitor gap if the
    service was down, and the warning about the default secret."""
    host = host or app.config["HOST"]
    port = port or app.config["PORT"]
    _refuse_taken_port(host, port)
    wait_for_database(app.config["DATABASE_URL"])
    migrations.upgrade(app.config["DATABASE_URL"])
    _record_monitor_gap(app)
    _warn_of_the_default_secret(app, host)
    return host, port


@click.command("serve", help="Migrate, then serve the API and dashboard with gunicorn.")
@click.option("-h", "--host", default=None, help="bind address [CLUSTERMON_HOST]")
@click.option("-p", "--port", type=int, default=None, help="port [CLUSTERMON_PORT]")
@click.option("--workers", type=int, default=None, help="worker processes [CLUSTERMON_WORKERS]")
@with_appcontext
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy
    host, port = _prepare(app, host, port)
    workers = workers or app.config["WORKERS"]
    if sa.make_url(app.config["DATABASE_URL"]).get_backend_name() == "postgresql" and find_spec(
        "gevent"
    ):
        _serve_gevent(host, port, workers)
    _serve(app, host, port, workers, app.config["THREADS"])


@click.command("run", help="All-in-one for a laptop: migrate, run the scheduler, serve.")
# -h and -p as in Flask's own run, which `flask --app wsgi run` replaces (cli/flask_run.py).
@click.option("-h", "--host", default=None, help="bind address [CLUSTERMON_HOST]")
@click.option("-p", "--port", type=int, default=None, help="port [CLUSTERMON_PORT]")
@click.option(
    "--simulate",
    "simulated",
    type=int,
    default=0,
    show_default=True,
    help="also play N demo servers sending heartbeats (one with a dead service), and N fake"
    " ProGet servers polled at their /health (one turning its service to Error after a minute)",
)
@with_appcontext
def run(host: str | None, port: int | None, simulated: int) -> None:

    app = current_app._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy
    svc = services(app)
    host, port = _prepare(app, host, port)
    url = f"http://{host}:{port}"
    database = _shown(app.config["DATABASE_URL"])
    path = laptop_tokens.tokens_path(app.config["DATABASE_URL"], app.instance_path)
    held = laptop_tokens.ensure(svc.engine, svc.clock, path, database)

    children = [spawn_scheduler(app.config["DATABASE_URL"])]
    demo = ""
    if simulated:
        if _configure_demo(svc.commands):
            demo = (
                "demo timeouts (a new log): heartbeats every {heartbeat_frequency_seconds} s,"
                " stale after {stale_timeout_seconds} s; PUT /api/v1/cluster/configuration"
                " changes them\n".format(**DEMO_CONFIGURATION)
            )
        if 0 < app.config["NEW_SERVERS_PER_HOUR"] < simulated:  # the demo asked for them
            app.config["NEW_SERVERS_PER_HOUR"] = simulated
        demo += _poll_fake_products(svc.commands, simulated)
        # The instance's agent token (not a new one per run); by the environment: a command
        # line is readable by every local user.
        simulator = ["simulate", "--servers", str(simulated), "--url", url]
        children.append(
            _spawn(
                *simulator,
                "--dead-service",
                "node02",
                env={SIMULATOR_TOKEN: held.tokens["agent"]},
            )
        )
    click.echo(
        f"\nclustermon is starting on {url}/ (database: {database})\n"
        f"{_tokens_banner(held, url)}"
        f"docs: {url}/docs\n{demo}",
        err=True,
    )
    try:
        _serve(app, host, port, 1)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(timeout=10)
        click.echo("clustermon stopped", err=True)


def _tokens_banner(held: laptop_tokens.LaptopTokens, url: str) -> str:
    """The instance's tokens, where they are kept, and how to use them; loud if one changed."""
    if not held.minted:
        origin = "the same as before"
    elif len(held.minted) == len(laptop_tokens.VARIABLES) and not held.replaced:
        origin = "new"
    else:
        origin = f"new: {', '.join(held.minted)}"
    width = max(map(len, held.tokens))
    lines = [f"tokens of this instance ({origin}; kept in {held.path}, mode 0600):"]
    lines += [
        f"  {role} token:{' ' * (width - len(role))} {token}  ({_USES[role]})"
        for role, token in held.tokens.items()
    ]
    if held.replaced:
        lines.insert(
            0,
            f"WARNING: the {', '.join(held.replaced)} token(s) CHANGED: {held.path} held none this"
            " database knows, so new ones were made and the earlier ones revoked; pages and"
            " scripts that used them must use the new ones",
        )
    lines += [
        f"dashboard: {url}/  (sign in with the admin token)",
        f". {held.path}  # in a shell: $ADMIN_TOKEN, $VIEWER_TOKEN, $AGENT_TOKEN",
        f'curl -H "Authorization: Bearer $VIEWER_TOKEN" {url}/api/v1/cluster',
    ]
    return "\n".join(lines) + "\n"


_USES = {
    "admin": "the dashboard's sign-in; changes configuration",
    "viewer": "reads",
    "agent": "sends heartbeats",
}


# The simulator's interval (10 s) as the heartbeat frequency and a stale timeout of three of
# them: the demo's dead service turns stale within a minute, and a live one would have to miss
# two beats in a row first.
DEMO_CONFIGURATION = {"heartbeat_frequency_seconds": 10, "stale_timeout_seconds": 30}


def _configure_demo(commands) -> bool:
    """Demo timeouts for `run --simulate`, on a log whose configuration was never changed
    (a configuration someone chose is left alone). Whether they were set."""
    if commands.configuration().version:
        return False
    metadata = {"actor": "simulator", "role": "admin", "source": None, "correlation_id": None}
    commands.change_configuration(DEMO_CONFIGURATION, metadata)
    return True


POLLED_DEMO_PREFIX = "proget"


def _poll_fake_products(commands, count: int) -> str:
    """Fake ProGet servers answering /health (collector/fake_product.py) from a thread of this
    process, so they end with it, and a target for each: the demo shows agentless polling. The
    last one reports its service as Error after a minute. What to print about them."""
    from collector import fake_product

    names = [f"{POLLED_DEMO_PREFIX}{i:02d}" for i in range(1, count + 1)]
    base, _stop = fake_product.start(names, error_after=60)
    metadata = {"actor": "simulator", "role": "admin", "source": None, "correlation_id": None}
    interval = DEMO_CONFIGURATION["heartbeat_frequency_seconds"]
    for name in names:
        settings = {"url": fake_product.target_url(base, name), "interval_seconds": interval}
        commands.configure_target(name, settings, metadata)
    return (
        f"polled: {', '.join(names)} (fake ProGet servers at {base}/<name>/health, every"
        f" {interval} s; {names[-1]}'s service turns to Error after a minute)\n"
    )


def _spawn(*args: str, env: dict | None = None):
    """Another clustermon command as a child process with the same environment (plus `env`)."""
    import subprocess

    command = [*CLUSTERMON, *args]
    return subprocess.Popen(command, env={**os.environ, **(env or {})})
