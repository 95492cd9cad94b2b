"""`clustermon simulate`: fake agents posting heartbeats to a running clustermon."""

from __future__ import annotations

import contextlib

import click
from flask import current_app
from flask.cli import with_appcontext

from api import tokens
from api.services import services
from cli import simulator as sim
from cli.processes import SIMULATOR_TOKEN


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
@click.option("--verbose", is_flag=True, help="print every round sent (default: changes only)")
@with_appcontext
def simulate(
    servers, url, token, interval, rounds, dead_service, version_drift, key_mismatch, verbose
):

    app = current_app._get_current_object()  # type: ignore[attr-defined]  # a LocalProxy
    url = url or f"http://{app.config['HOST']}:{app.config['PORT']}"
    if token is None:
        svc = services(app)
        token = tokens.create_token(svc.engine, svc.clock, "simulator", "agent")
    scenario = sim.Scenario(
        servers, frozenset(dead_service), frozenset(version_drift), frozenset(key_mismatch)
    )
    # Ctrl-C is how it stops (also under `run`, which stops it with itself): no "Aborted!"
    with contextlib.suppress(KeyboardInterrupt):
        sim.run(
            url,
            token,
            scenario,
            interval,
            rounds,
            echo=lambda m: click.echo(m, err=True),
            verbose=verbose,
        )
