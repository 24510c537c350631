"""Alembic environment: runs on the connection handed over by ``radqc.catalogue.database.migrate``."""

from alembic import context
from sqlalchemy import create_engine

from radqc.catalogue.models import Base, UTCDateTime


def render_item(type_, obj, autogen_context):  # type: ignore[no-untyped-def]
    """Migrations store plain column types, so they never import the (changing) models module."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


config = context.config
target_metadata = Base.metadata

connection = config.attributes.get("connection")
if connection is None:  # invoked from the alembic CLI with -x url=...
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("pass -x url=DATABASE_URL")
    with create_engine(url).begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True, render_item=render_item)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(
        connection=connection, target_metadata=target_metadata, render_as_batch=True, render_item=render_item
    )
    with context.begin_transaction():
        context.run_migrations()
