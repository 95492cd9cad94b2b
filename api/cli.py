"""The `clustermon` command (also reachable as `flask --app wsgi …`)."""

from __future__ import annotations

import functools
import os
import socket
import sys
from importlib.util import find_spec

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

import migrations
from api import tokens


@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply Alembic migrations to CLUSTERMON_DATABASE_URL.")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    migrations.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}", err=True)


@db_group.command("downgrade", help="Revert migrations (default: to an empty database).")
@click.option("--revision", default="base", show_default=True)
@with_appcontext
def db_downgrade(revision: str) -> None:
    migrations.downgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}", err=True)


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

        from api import server_errors
    except ImportError:  # pragma: no cover - Windows
        from werkzeug.serving import run_simple

        run_simple(host, port, app, threaded=True)
        return

    class Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("threads", threads)
            self.cfg.set("accesslog", None)
            self.cfg.set("reuse_port", REUSE_PORT)
            self.cfg.set("post_worker_init", server_errors.post_worker_init)
            self.cfg.set("control_socket_disable", True)  # see _serve_gevent

        def load(self):
            return app

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
            "--config=python:api.server_errors",  # its post_worker_init hook
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
    from api.app import services
    from scheduler.gaps import resume_after_gap

    svc = services(app)
    resume_after_gap(
        svc.store,
        svc.clock(),
        config=svc.commands.configuration(),
        sweep_interval_seconds=float(app.config["SWEEP_INTERVAL_SECONDS"]),
        detector=f"api:{socket.gethostname()}:{os.getpid()}",
    )


@click.command("serve", help="Migrate, then serve the API and dashboard with gunicorn.")
@click.option("-h", "--host", default=None, help="bind address [CLUSTERMON_HOST]")
@click.option("-p", "--port", type=int, default=None, help="port [CLUSTERMON_PORT]")
@click.option("--workers", type=int, default=None, help="worker processes [CLUSTERMON_WORKERS]")
@with_appcontext
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    app = current_app._get_current_object()
    host = host or app.config["HOST"]
    port = port or app.config["PORT"]
    _refuse_taken_port(host, port)
    migrations.upgrade(app.config["DATABASE_URL"])
    _record_monitor_gap(app)
    click.echo(f"clustermon serving on http://{host}:{port}/", err=True)
    workers = workers or app.config["WORKERS"]
    if sa.make_url(app.config["DATABASE_URL"]).get_backend_name() == "postgresql" and find_spec(
        "gevent"
    ):
        _serve_gevent(host, port, workers)
    _serve(app, host, port, workers, app.config["THREADS"])


@click.command("run", help="All-in-one for a laptop: migrate, run the scheduler, serve.")
# -h and -p as in Flask's own run, which `flask --app wsgi run` replaces (api/flask_run.py).
@click.option("-h", "--host", default=None, help="bind address [CLUSTERMON_HOST]")
@click.option("-p", "--port", type=int, default=None, help="port [CLUSTERMON_PORT]")
@click.option(
    "--simulate",
    "simulated",
    type=int,
    default=0,
    show_default=True,
    help="also play N demo servers sending heartbeats (one with a dead service)",
)
@with_appcontext
def run(host: str | None, port: int | None, simulated: int) -> None:
    from api.app import services

    app = current_app._get_current_object()
    svc = services(app)
    host = host or app.config["HOST"]
    port = port or app.config["PORT"]
    _refuse_taken_port(host, port)
    migrations.upgrade(app.config["DATABASE_URL"])
    _record_monitor_gap(app)
    url = f"http://{host}:{port}"
    tokens.revoke_tokens(svc.engine, svc.clock, "laptop-admin")
    admin = tokens.create_token(svc.engine, svc.clock, "laptop-admin", "admin")
    from scheduler.process import spawn_scheduler

    children = [spawn_scheduler(app.config["DATABASE_URL"])]
    demo = ""
    if simulated:
        if _configure_demo(svc.commands):
            demo = (
                "demo timeouts (a new log): heartbeats every {heartbeat_frequency_seconds} s,"
                " stale after {stale_timeout_seconds} s; PUT /api/v1/cluster/configuration"
                " changes them\n".format(**DEMO_CONFIGURATION)
            )
        agent = tokens.create_token(svc.engine, svc.clock, "simulator", "agent")
        # The token goes by the environment: a command line is readable by every local user.
        simulator = ["simulate", "--servers", str(simulated), "--url", url]
        children.append(
            _spawn(*simulator, "--dead-service", "node02", env={SIMULATOR_TOKEN: agent})
        )
    click.echo(
        f"\nclustermon is starting on {url}/ (database: {app.config['DATABASE_URL']})\n"
        f"admin token (shown once): {admin}\n"
        f"dashboard: {url}/  (sign in with the token)\n"
        f"API:  curl -H 'Authorization: Bearer {admin}' {url}/api/v1/cluster\n"
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


# The simulator's interval (10 s) as the heartbeat frequency and a stale timeout of three of
# them: the demo's dead service turns stale within a minute, and a live one would have to miss
# two beats in a row first.
DEMO_CONFIGURATION = {"heartbeat_frequency_seconds": 10, "stale_timeout_seconds": 30}
SIMULATOR_TOKEN = "CLUSTERMON_SIMULATOR_TOKEN"


def _configure_demo(commands) -> bool:
    """Demo timeouts for `run --simulate`, on a log whose configuration was never changed
    (a configuration someone chose is left alone). Whether they were set."""
    if commands.configuration().version:
        return False
    metadata = {"actor": "simulator", "role": "admin", "source": None, "correlation_id": None}
    commands.change_configuration(DEMO_CONFIGURATION, metadata)
    return True


def _spawn(*args: str, env: dict | None = None):
    """Another clustermon command as a child process with the same environment (plus `env`)."""
    import subprocess

    code = "from api.cli import main; main()"
    return subprocess.Popen([sys.executable, "-c", code, *args], env={**os.environ, **(env or {})})


@click.command("simulate", help="Play N servers that send heartbeats to a running clustermon.")
@click.option("--servers", type=click.IntRange(1, 500), default=3, show_default=True)
@click.option("--url", default=None, help="clustermon base URL [http://HOST:PORT]")
@click.option(
    "--token",
    default=None,
    envvar=SIMULATOR_TOKEN,
    help=f"agent token [{SIMULATOR_TOKEN}] (default: create one named simulator)",
)
@click.option("--interval", type=float, default=10.0, show_default=True, help="seconds")
@click.option("--rounds", type=int, default=None, help="stop after this many rounds")
@click.option("--dead-service", multiple=True, help="server whose service stops after one beat")
@click.option("--version-drift", multiple=True, help="server reporting an older version")
@click.option("--key-mismatch", multiple=True, help="server with a different encryption key")
@with_appcontext
def simulate(servers, url, token, interval, rounds, dead_service, version_drift, key_mismatch):
    from api import simulate as sim
    from api.app import services

    app = current_app._get_current_object()
    url = url or f"http://{app.config['HOST']}:{app.config['PORT']}"
    if token is None:
        svc = services(app)
        token = tokens.create_token(svc.engine, svc.clock, "simulator", "agent")
    scenario = sim.Scenario(
        servers, frozenset(dead_service), frozenset(version_drift), frozenset(key_mismatch)
    )
    sim.run(url, token, scenario, interval, rounds, echo=lambda m: click.echo(m, err=True))


@click.group("token", help="API tokens (only their SHA-256 hash is stored).")
def token_group() -> None:
    pass


@token_group.command("create", help="Print a new token alone on stdout; it is shown only once.")
@click.option("--role", type=click.Choice(tokens.ROLES), required=True)
@click.option(
    "--name",
    required=True,
    callback=lambda _ctx, _param, value: _actor_name(value),
    help="who uses it; recorded as the actor of its events",
)
@with_appcontext
def token_create(role: str, name: str) -> None:
    from api.app import services

    svc = services(current_app)
    click.echo(tokens.create_token(svc.engine, svc.clock, name, role))


def _actor_name(value: str) -> str:
    if not value.strip():
        raise click.BadParameter("must name who uses the token (it is recorded as the actor)")
    return value


@token_group.command("revoke", help="Revoke every token with this name.")
@click.option("--name", required=True)
@with_appcontext
def token_revoke(name: str) -> None:
    from api.app import services

    svc = services(current_app)
    count = tokens.revoke_tokens(svc.engine, svc.clock, name)
    click.echo(f"revoked {count} token(s) named {name!r}", err=True)


def init_app(app: Flask) -> None:
    from api import cli_audit, cli_projections, cli_scheduler

    for command in [
        db_group,
        token_group,
        serve,
        run,
        simulate,
        *cli_projections.commands,
        *cli_scheduler.commands,
        *cli_audit.commands,
    ]:
        _explain_missing_tables(command)
        app.cli.add_command(command)


MIGRATE_FIRST = "the database has no clustermon tables: run `clustermon db upgrade`"


def _explain_missing_tables(command: click.Command) -> None:
    """A command run on a database never migrated says so in one line (as `clustermon` or as
    `flask --app wsgi`), instead of a SQLAlchemy traceback. Once per command: the app factory
    runs many times in one process."""
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _explain_missing_tables(sub)
        return
    callback = command.callback
    if callback is None or getattr(callback, "explains_missing_tables", False):
        return

    @functools.wraps(callback)
    def explained(*args, **kwargs):
        try:
            return callback(*args, **kwargs)
        except sa.exc.DBAPIError as exc:
            if _missing_table(exc):
                raise click.ClickException(MIGRATE_FIRST) from None
            raise

    explained.explains_missing_tables = True
    command.callback = explained


def main() -> None:
    if {"serve", "run"} & set(sys.argv[1:2]) and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # gunicorn workers are separate processes: /metrics adds up what they write here.
        # Set before anything imports prometheus_client, which reads it once.
        import tempfile

        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="clustermon-metrics-")
    from api.app import create_app

    FlaskGroup(
        name="clustermon",
        create_app=create_app,
        add_default_commands=False,
        add_version_option=False,
        load_dotenv=False,
        set_debug_flag=False,
    )(prog_name="clustermon")


def _missing_table(exc: sa.exc.DBAPIError) -> bool:
    """A database never migrated (PostgreSQL's undefined_table, SQLite's "no such table")."""
    return getattr(exc.orig, "sqlstate", None) == "42P01" or "no such table" in str(exc.orig)
