"""Start a consumer function in one process: its schema migration, then the function served.

`python -m ripple_consumer.serve --target=handle --source=main.py --signature-type=cloudevent`
(the container command of every consumer's knative/<name>/service.yaml, run from the function's
folder) does what `alembic upgrade head && exec functions-framework ...` did, without a second
Python interpreter importing SQLAlchemy and Alembic again: on a loaded 2-core machine that first
interpreter cost 2.7-3 s of every cold start, while an up-to-date schema costs one query.
The migration runs the function's own migrations/env.py (ripple_consumer.migrations: online only,
under the PostgreSQL advisory lock that serialises concurrent cold starts) and finishes, its
connection closed, before the function serves. It runs in a forked child, started first, while
this process imports the function (issue 22's cold start: the two overlap on two cores), so
Alembic and the migration scripts (~15 MiB) never stay resident in the server. A failed
migration stops the start with the child's exit code. The child first asks whether the schema is
current already (ripple_consumer/current_schema.py: the version table against the scripts' head,
with psycopg2 alone) and imports Alembic and SQLAlchemy only when it is not: with them, the child
took longer than importing the function and was the cold start's critical path (issue 22).
The function is then served by ripple_server in this same process (uvicorn, no gunicorn master:
one process per instance, issue 22). The garbage collector is off while the migration and the
function are imported (start-up allocates a lot and frees little: ~45 ms of ~330 ms CPU measured
for order-alerts) and the objects that exist then are frozen, so later collections skip them.
Every argument is ripple_server's (functions-framework's own names). The app it builds, Flask or
(for a function of ripple_server.aio) Starlette, gets the probe and metrics routes
(ripple_consumer.http).
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import traceback
from pathlib import Path

from ripple_consumer.current_schema import is_current


def migrate(folder: Path) -> None:
    """`alembic upgrade head` with the folder's alembic.ini, in this process."""
    from alembic import command
    from alembic.config import Config

    ini = folder / "alembic.ini"
    if not ini.is_file():
        raise SystemExit(f"ripple_consumer.serve: no {ini}; run it from the function's folder")
    command.upgrade(Config(str(ini)), "head")


def start_migration(folder: Path) -> int:
    """migrate() in a forked child, started now; its pid. The caller goes on importing the function
    meanwhile (on two cores the two overlap) and must finish_migration() before serving."""
    if not (folder / "alembic.ini").is_file():
        raise SystemExit(
            f"ripple_consumer.serve: no {folder / 'alembic.ini'}; run it from the function's folder"
        )
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            # A current schema is read with psycopg2 alone; Alembic runs only when it may have work.
            if not is_current(folder):
                migrate(folder)
            code = 0
        except SystemExit as error:
            if error.code not in (None, 0):
                print(error.code if isinstance(error.code, str) else "migration failed", file=sys.stderr)
            code = error.code if isinstance(error.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    return child


def finish_migration(child: int) -> None:
    """Wait for the migration child; stop with its exit code if it failed."""
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(code)


def main(argv: list[str]) -> None:
    gc.disable()
    # The migration runs while this process imports the function (main.py opens no connection at
    # import: engines are lazy); nothing is served before the schema is current.
    child = start_migration(Path.cwd())
    waited = False

    def prepare(app: object) -> None:
        nonlocal waited
        from ripple_consumer.http import add_routes, decode_binary_attributes

        add_routes(app)  # type: ignore[arg-type]
        decode_binary_attributes(app)  # type: ignore[arg-type]
        waited = True
        finish_migration(child)
        gc.freeze()
        gc.enable()

    try:
        import ripple_server

        ripple_server.main(argv, prepare=prepare)
    except BaseException:
        if not waited:
            # A start that failed here still reports the migration's outcome, and leaves no child.
            waited = True
            with contextlib.suppress(SystemExit):
                finish_migration(child)
        raise


if __name__ == "__main__":
    main(sys.argv[1:])
