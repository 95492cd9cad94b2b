from typing import cast

from alembic import context

from eventstore.db import create_engine

config = context.config
# Set by migrations.alembic_config; with a default, never None.
url = cast(str, config.get_main_option("sqlalchemy.url", ""))


def run_migrations() -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                target_metadata=None,
                render_as_batch=connection.dialect.name == "sqlite",
                transaction_per_migration=True,
            )
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations()
