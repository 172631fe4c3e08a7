"""The database's schema history: Alembic migrations, shipped inside the package.

`directory.db.ensure_schema` runs them (at `caseline serve`, `caseline worker`
and `directory load`); an operator can run the same with Alembic's own command
line, pointing it at the `alembic.ini` here:

    alembic -c "$(python -c 'import directory.migrations as m; print(m.ALEMBIC_INI)')" \
        upgrade head

The database is `DATABASE_URL` (or `.env`, or the default under `instance/`),
as for caseline itself.
"""

from pathlib import Path

# The folder of env.py and versions/, and its Alembic configuration file.
MIGRATIONS_DIR = Path(__file__).resolve().parent
ALEMBIC_INI = MIGRATIONS_DIR / "alembic.ini"
