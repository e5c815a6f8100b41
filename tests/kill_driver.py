"""Run the ``corpusforge`` CLI and SIGKILL it at a chosen point of a Spark stage.

    python -m tests.kill_driver POINT corpusforge-arguments...

The kill is real: ``SIGKILL`` to the whole process group (start the driver with
``start_new_session=True``), so the Python driver, its Spark JVM and the JVM's Python workers all
die at once, with no ``finally``, ``atexit`` or shutdown hook running. Only *when* it happens is
chosen here, by wrapping functions of the stage contract (:mod:`pipelines.stage`), so that each
test hits its window every time instead of racing a timer:

``write`` (``write:N``: in the N-th Spark stage the process runs, e.g. inside ``corpusforge run``)
    while the stage's Spark job writes its output: as soon as the first file appears in the
    staging directory (``.NAME.tmp-PID``), or at the latest when ``write_kept`` returns.
``publish``
    with everything written, ``_stats.json`` and ``_SUCCESS`` inside the staging directory, just
    before the rename that publishes it.
``replace``
    an earlier finished output exists: after it was moved aside, before the new one takes its place.

Test-only: nothing in the product knows about this module.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

POINTS = ("write", "publish", "replace")


def die() -> None:
    os.killpg(os.getpgrp(), signal.SIGKILL)


def _kill_when_a_file_appears(folder: Path) -> None:
    def watch() -> None:
        while True:
            try:
                if folder.exists() and any(p.is_file() for p in folder.rglob("*")):
                    die()
            except OSError:  # Spark renames its task files while we walk them
                pass
            time.sleep(0.005)

    threading.Thread(target=watch, daemon=True).start()


def kill_during_write(nth: int = 1) -> None:
    import flows.runner as runner

    original_run_stage = runner.run_stage
    started = 0

    def run_stage(stage, *args, **kwargs):
        nonlocal started
        started += 1
        if started != nth:
            return original_run_stage(stage, *args, **kwargs)
        original_write = stage.write_kept

        def write_kept(kept, tmp, config):
            _kill_when_a_file_appears(Path(tmp))
            original_write(kept, tmp, config)
            die()

        stage.write_kept = write_kept
        return original_run_stage(stage, *args, **kwargs)

    runner.run_stage = run_stage


def kill_at_rename(which: int) -> None:
    """Die at publish's ``which``-th ``os.rename`` (1: staging -> output when there is no earlier
    output; 2: staging -> output after the earlier output was moved aside)."""
    import pipelines.stage as contract

    original_publish = contract.publish

    def publish(tmp, output, stats):
        real_rename = os.rename
        calls = 0

        def rename(src, dst, *args, **kwargs):
            nonlocal calls
            calls += 1
            if calls == which:
                die()
            real_rename(src, dst, *args, **kwargs)

        os.rename = rename
        try:
            original_publish(tmp, output, stats)
        finally:
            os.rename = real_rename
        die()  # the point was never reached (e.g. no earlier output for "replace"): fail loudly

    contract.publish = publish


def main(argv: list[str]) -> None:
    point, cli_args = argv[0], argv[1:]
    if point == "write" or point.startswith("write:"):
        kill_during_write(int(point.partition(":")[2] or 1))
    elif point == "publish":
        kill_at_rename(1)
    elif point == "replace":
        kill_at_rename(2)
    else:
        raise SystemExit(f"unknown kill point {point!r}; one of {', '.join(POINTS)}")
    from flows.cli import main as cli_main

    sys.argv = ["corpusforge", *cli_args]
    cli_main()
    raise SystemExit("the stage finished without reaching the kill point")


if __name__ == "__main__":
    main(sys.argv[1:])
