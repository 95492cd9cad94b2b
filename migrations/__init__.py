"""Alembic migrations, one set of scripts for SQLite (batch mode) and PostgreSQL.

PostgreSQL's server-side functions have one current source, `eventstore/sql/<function>.sql`.
A revision that creates or changes a function runs its own frozen copy,
`versions/sql/<revision>_<function>.sql`, so that it keeps creating the definition of its time
whatever the current file says later; a downgrade runs the previous revision's copy. To change a
function: edit its file in eventstore/sql/, copy it to versions/sql/ under the new revision's
number and write that revision (tests/integration/test_sql_functions.py fails until the head's
functions are the files' again).
"""

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent
FUNCTIONS = HERE / "versions" / "sql"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def function_sql(revision: str, function: str, *, replace: bool = False) -> str:
    """The statement with which `revision` creates `function` (`versions/sql/`); `replace`: as
    CREATE OR REPLACE, for a downgrade that puts this definition back over a later one."""
    text = (FUNCTIONS / f"{revision}_{function}.sql").read_text(encoding="utf-8")
    if replace and text.startswith("CREATE FUNCTION "):
        text = "CREATE OR REPLACE FUNCTION " + text.removeprefix("CREATE FUNCTION ")
    return text
