"""The one place a SparkSession is made.

``local[*]`` by default, tuned for a small machine; ``master: spark://host:7077`` in the
recipe (or ``--spark-master``) runs the same jobs on a standalone cluster.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from contextlib import contextmanager
from importlib import resources
from typing import TYPE_CHECKING, Iterator

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.errors import JavaMissingError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger("corpusforge.spark")

MIN_JAVA = 17
JAVA_HINT = (
    "Install Java 17 or newer (Debian/Ubuntu: `sudo apt-get install openjdk-17-jre-headless`) "
    "or point JAVA_HOME at one."
)


class SparkSettings(BaseModel):
    """Recipe section ``spark``."""

    model_config = ConfigDict(extra="forbid")

    master: str = Field("local[*]", description="local[*], local[N], spark://host:port, yarn or k8s://https://host:port")
    app_name: str = "corpusforge"
    driver_memory: str = Field("2g", description="JVM heap of the driver, e.g. 2g")
    shuffle_partitions: int | None = Field(
        None, ge=1, description="spark.sql.shuffle.partitions; default: sized per stage from its input "
        "(8 MB of input per partition, at least 4 per core)"
    )
    log_level: str = Field("WARN", pattern="^(ALL|DEBUG|INFO|WARN|ERROR|FATAL|OFF)$")
    conf: dict[str, str] = Field(default_factory=dict, description="extra spark.* settings")
    log_file: str | None = Field(
        None, description="also append the driver's Spark log here (flows use OUT/logs/spark.log)"
    )

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_values_as_strings(cls, conf: object) -> object:
        # YAML reads `spark.executor.cores: 2` as an int; Spark wants strings. Only scalars are
        # turned into text: a list or mapping is left for validation to refuse (str() of a YAML
        # alias bomb, a few hundred bytes of recipe, would expand it to gigabytes).
        if isinstance(conf, dict):
            return {
                k: str(v).lower() if isinstance(v, bool) else str(v) if isinstance(v, (int, float)) else v
                for k, v in conf.items()
            }
        return conf


def find_java() -> tuple[str, int]:
    """Return the java executable and its major version, or raise JavaMissingError."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        where = f"JAVA_HOME={java_home} has no bin/java" if java_home else "no `java` on PATH"
        raise JavaMissingError(f"Spark needs Java {MIN_JAVA}+ and none was found ({where}). {JAVA_HINT}")
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise JavaMissingError(f"Could not run {java} -version ({exc}). {JAVA_HINT}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise JavaMissingError(f"Could not read the version of {java}. {JAVA_HINT}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise JavaMissingError(f"Spark needs Java {MIN_JAVA}+, but {java} is Java {major}. {JAVA_HINT}")
    return java, major


# Spark settings that load or run code (JVM options and class paths, jars and packages, files
# shipped to executors, the Python executable and worker modules, environment variables,
# plugins and listeners, resource discovery scripts, container images and pod templates).
# A recipe file may not set them; the operator passes them on the command line (--set).
CODE_LOADING_CONF = re.compile(
    r"""^spark\.(
        jars(\..+)? | files | archives | submit\.pyFiles | yarn\.dist\..+
      | (driver|executor|yarn\.am)\.(extra|default)(JavaOptions|ClassPath|LibraryPath)
      | pyspark\..+ | python\..+
      | executorEnv\..+ | yarn\.appMasterEnv\..+ | kubernetes\..+
      | (driver|executor)?\.?plugins | extraListeners
      | sql\.(extensions|queryExecutionListeners|streaming\.streamingQueryListeners)
      | .*\.discoveryScript
    )$""",
    re.VERBOSE,
)


def code_loading_keys(conf: object) -> list[str]:
    """The keys of a ``spark.conf`` mapping that would make Spark load or run code."""
    if not isinstance(conf, dict):
        return []
    return sorted(str(key) for key in conf if CODE_LOADING_CONF.match(str(key).strip()))


def _java_option(option: str) -> str:
    """One JVM option quoted for extraJavaOptions (Spark splits it at white space, honouring
    double quotes and backslash escapes): a path with spaces stays one option."""
    return '"' + option.replace("\\", "\\\\").replace('"', '\\"') + '"'


def spark_conf(settings: SparkSettings) -> dict[str, str]:
    """The full configuration a session is built with (exposed for tests and `--dry-run`)."""
    cores = os.cpu_count() or 2
    log4j = resources.files("pipelines").joinpath("log4j2.properties")
    java_opts = _java_option(f"-Dlog4j2.configurationFile=file:{log4j}")
    driver_opts = java_opts
    if settings.log_file:
        os.makedirs(os.path.dirname(os.path.abspath(settings.log_file)), exist_ok=True)
        driver_opts += " " + _java_option(f"-Dcorpusforge.spark.log={os.path.abspath(settings.log_file)}")
    conf = {
        "spark.master": settings.master,
        "spark.app.name": settings.app_name,
        "spark.driver.memory": settings.driver_memory,
        "spark.driver.extraJavaOptions": driver_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.sql.shuffle.partitions": str(settings.shuffle_partitions or 4 * cores),
        # Unset shuffle_partitions: each stage sizes its shuffles from its input (size_shuffles).
        AUTO_SHUFFLE_KEY: "false" if settings.shuffle_partitions else "true",
        "spark.sql.adaptive.advisoryPartitionSizeInBytes": "32m",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        # Rows here are whole documents (KBs to MBs), not analytics records: smaller input
        # splits and Arrow batches keep each task's memory bounded whatever the corpus size.
        "spark.sql.files.maxPartitionBytes": "32m",
        "spark.sql.execution.arrow.maxRecordsPerBatch": "1024",
        # A Parquet row group is the smallest piece one task reads, and the writer buffers a
        # whole one in the JVM heap: capped, a task's memory no longer grows with its share of
        # the corpus (at 1M documents the default 128 MB groups ran a 2 GB executor out of heap).
        "spark.hadoop.parquet.block.size": str(32 * 1024 * 1024),
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.parquet.compression.codec": "zstd",
        # Partition directories (lang=en/) stay strings, as in the document schema.
        "spark.sql.sources.partitionColumnTypeInference.enabled": "false",
        # The stage contract writes its own _SUCCESS (with a fingerprint) last.
        "spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs": "false",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.python.worker.reuse": "true",
    }
    conf.update(settings.conf)
    return conf


AUTO_SHUFFLE_KEY = "spark.corpusforge.shuffle.auto"
# Input bytes (compressed Parquet or raw files) per shuffle partition: about 30 MB of rows in
# memory, so a shuffle task's share stays bounded whatever the corpus size; adaptive execution
# merges partitions that come out smaller.
SHUFFLE_INPUT_BYTES_PER_PARTITION = 8 * 1024 * 1024


def size_shuffles(spark: "SparkSession", input_bytes: int) -> int:
    """Set ``spark.sql.shuffle.partitions`` for a stage reading ``input_bytes``: at least 4 per
    core of the application, more as the input grows (unless the recipe fixed the number)."""
    if spark.conf.get(AUTO_SHUFFLE_KEY, "false") != "true":
        return int(spark.conf.get("spark.sql.shuffle.partitions"))
    floor = 4 * spark.sparkContext.defaultParallelism
    partitions = max(floor, -(-input_bytes // SHUFFLE_INPUT_BYTES_PER_PARTITION))
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    return partitions


def get_spark(settings: SparkSettings | None = None) -> "SparkSession":
    """Return the running session, or start one from ``settings``."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = settings or SparkSettings()
    if settings.master.startswith("local"):
        find_java()
    # Executors must run the same interpreter (and so the same venv) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in spark_conf(settings).items():
        builder = builder.config(key, value)
    log.info("starting Spark (%s)", settings.master)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(settings.log_level)
    return spark


@contextmanager
def spark_session(settings: SparkSettings | None = None) -> Iterator["SparkSession"]:
    """A session for the block; stopped afterwards only if this block started it."""
    with spark_scope():
        yield get_spark(settings)


@contextmanager
def spark_scope() -> Iterator[None]:
    """Stop, on exit, a session that was started inside the block (lazily, by get_spark).

    Used by flows: one session per flow run, and none at all when every stage is current.
    """
    from pyspark.sql import SparkSession

    already_running = SparkSession.getActiveSession() is not None
    try:
        yield
    finally:
        active = SparkSession.getActiveSession()
        if active is not None and not already_running:
            active.stop()
