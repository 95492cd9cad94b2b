"""CLI commands of the scheduler side, registered by cli/main.py."""

import logging
import os

import click
from flask import current_app
from flask.cli import with_appcontext

from cli.malloc import limit_arenas

commands: list[click.Command] = []


@click.command(
    "scheduler",
    help="Run the scheduler (timeout sweep, snapshots, reports). Several may run against one"
    " database: one leads, the others stand by and take over within a few seconds.",
)
@click.option(
    "--name",
    envvar="CLUSTERMON_SCHEDULER_NAME",
    default=None,
    help="detector identity stamped on timeouts [CLUSTERMON_SCHEDULER_NAME; default host:pid]",
)
@click.option("--exit-with-parent", type=int, default=None, hidden=True)
@with_appcontext
def scheduler(name: str | None, exit_with_parent: int | None) -> None:
    from api.services import services
    from cli.database_wait import wait_for_database
    from scheduler import metrics as scheduler_metrics
    from scheduler.retention_job import RetentionPolicy
    from scheduler.service import SchedulerService, run_forever

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    limit_arenas()  # before any job's thread allocates (cli/malloc.py)
    # Its start reads the log (the deadline index): the database must answer first.
    wait_for_database(current_app.config["DATABASE_URL"])
    shared = services(current_app)
    service = SchedulerService(
        shared.store,
        shared.clock,
        sweep_interval_seconds=float(current_app.config["SWEEP_INTERVAL_SECONDS"]),
        detector=name,
        secret_key=current_app.config["SECRET_KEY"],
        retention=RetentionPolicy.from_environment(current_app.instance_path),
    )
    service.announce = lambda text: click.echo(text, err=True)
    serving = scheduler_metrics.serve_from_environment()
    if serving:
        click.echo(f"scheduler {service.detector}: metrics at {serving[0]}", err=True)
    try:
        run_forever(service, exit_with_parent=exit_with_parent)
    finally:
        scheduler_metrics.forget_this_process()
    click.echo(f"scheduler {service.detector}: stopped", err=True)
    logging.shutdown()
    # Do not wait for a job still running (a long projection catch-up, say): its work is
    # transactional, and waiting would delay the exit by as long as it takes.
    os._exit(0)


commands.append(scheduler)
