"""`flask --app wsgi run`, as API.md names it: clustermon's all-in-one for clustermon's app.

Flask looks its built-in commands up before an app's own, so `flask --app wsgi run` started
Flask's development server: no migration, no scheduler (and a 500 on a new database). Plugin
commands (the `flask.commands` entry points, pyproject.toml) replace built-ins of the same
name, for every app in the environment: this one hands over to Flask's own `run` for any app
that is not clustermon's.
"""

from __future__ import annotations

import click
from flask.cli import ScriptInfo, run_command


class _Run(click.Command):
    def make_context(self, info_name, args, parent=None, **extra):
        # click invokes the command of the context made here: the chosen command's own.
        return _chosen(parent).make_context(info_name, args, parent=parent, **extra)


def _chosen(parent: click.Context | None) -> click.Command:
    if parent is None:  # what the AttributeError below would lead to
        return run_command
    try:
        app = parent.ensure_object(ScriptInfo).load_app()
    except Exception:  # no app, or one that fails to load: Flask's run says why
        return run_command
    if "clustermon" not in app.extensions:
        return run_command
    from cli.serve import run

    return run


run = _Run(
    "run",
    short_help="All-in-one for a laptop: migrate, run the scheduler, serve.",
    help="clustermon's app: migrate, run the scheduler, serve (`clustermon run`). "
    "Any other app: Flask's development server.",
)
