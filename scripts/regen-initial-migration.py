"""Regenerate migration 0001 from the ORM models.

Only valid before the first release (no deployed catalogue to upgrade yet). After a
release, schema changes get a new Alembic revision instead.
"""

import tempfile
from pathlib import Path

from alembic import command
from alembic.config import Config

from radqc.catalogue.database import MIGRATIONS_DIR, make_engine

versions = MIGRATIONS_DIR / "versions"
for old in versions.glob("0001_*.py"):
    old.unlink()
with tempfile.TemporaryDirectory() as tmp:
    engine = make_engine(f"sqlite:///{Path(tmp) / 'empty.sqlite'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message="initial catalogue", autogenerate=True, rev_id="0001")
print("regenerated", list(versions.glob("0001_*.py")))
