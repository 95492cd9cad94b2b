"""CLI commands of the scheduler side, registered by api/cli.py."""

import click

commands: list[click.Command] = []
