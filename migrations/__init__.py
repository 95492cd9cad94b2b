"""Alembic migrations, one set of scripts for SQLite (batch mode) and PostgreSQL."""

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def revision_module(filename: str) -> ModuleType:
    """The script `versions/<filename>` as a module, for the texts it defines (alembic's version
    files are not a package): a downgrade restores an earlier revision's function from it."""
    path = HERE / "versions" / filename
    spec = importlib.util.spec_from_file_location(f"clustermon_migration_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
