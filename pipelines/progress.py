"""A live progress bar for Spark jobs, fed by Spark's status tracker.

Shown only when stderr is a terminal, so logs and CI output stay clean.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

POLL_SECONDS = 0.5


@contextmanager
def spark_progress(spark: "SparkSession", label: str, console: Console | None = None) -> Iterator[None]:
    """Show ``label`` with the tasks completed out of the tasks of all jobs started in the block."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield
        return
    tracker = spark.sparkContext.statusTracker()
    group = f"corpusforge-{label}-{id(object())}"
    spark.sparkContext.setJobGroup(group, label)
    stop = threading.Event()
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task(label, total=None)

    def poll() -> None:
        while not stop.wait(POLL_SECONDS):
            total = done = 0
            for job_id in tracker.getJobIdsForGroup(group):
                job = tracker.getJobInfo(job_id)
                for stage_id in job.stageIds if job else []:
                    info = tracker.getStageInfo(stage_id)
                    if info:
                        total += info.numTasks
                        done += info.numCompletedTasks
            if total:
                progress.update(task, total=total, completed=done)

    thread = threading.Thread(target=poll, daemon=True)
    with progress:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
