"""Alembic environment: runs migrations against the URL the service configured."""

from alembic import context
from sqlalchemy import pool, text

from api.db import Base, engine_for

config = context.config
target_metadata = Base.metadata
# Serialises migrations of one PostgreSQL database across processes and hosts (web, workers
# and `auditor migrate` may start together); an arbitrary constant that names this lock.
MIGRATION_LOCK_KEY = 0x41554449544F52


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or "", target_metadata=target_metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url") or ""
    engine = engine_for(url) if url.startswith("sqlite") else engine_for(url).execution_options(poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=target_metadata, render_as_batch=url.startswith("sqlite")
        )
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                # Held until this transaction ends; the next process then finds the schema at head.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
