"""CLI commands of the projections side, registered by api/cli.py."""

import click

commands: list[click.Command] = []
