"""The Spark session factory: its tuning, and a clear error when Java is missing or too old."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.errors import JavaMissingError
from pipelines.spark import SparkSettings, find_java, get_spark, spark_conf


def test_session_is_tuned_for_a_small_machine(spark) -> None:
    conf = spark.sparkContext.getConf()
    assert spark.sparkContext.master == "local[2]"
    assert conf.get("spark.sql.shuffle.partitions") == "4"
    assert conf.get("spark.sql.execution.arrow.pyspark.enabled") == "true"
    assert conf.get("spark.sql.session.timeZone") == "UTC"
    assert conf.get("spark.hadoop.mapreduce.fileoutputcommitter.marksuccessfuljobs") == "false"
    assert get_spark() is spark  # one session per process: later callers get the running one
    assert spark.range(1000).selectExpr("sum(id)").first()[0] == 499500


def test_conf_defaults_and_overrides() -> None:
    conf = spark_conf(SparkSettings(master="spark://10.1.2.3:7077", conf={"spark.executor.memory": "8g"}))
    assert conf["spark.master"] == "spark://10.1.2.3:7077"
    assert conf["spark.executor.memory"] == "8g"
    assert conf["spark.sql.shuffle.partitions"] == str(4 * (os.cpu_count() or 2))
    assert "log4j2.configurationFile=file:" in conf["spark.driver.extraJavaOptions"]
    assert SparkSettings(conf={"spark.executor.cores": 2}).conf == {"spark.executor.cores": "2"}


def fake_java(tmp_path: Path, version_line: str) -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(0o755)
    return home


def test_java_found_and_version_read(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')))
    assert find_java()[1] == 17


def test_java_too_old(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(fake_java(tmp_path, 'java version "1.8.0_392"')))
    with pytest.raises(JavaMissingError, match=r"is Java 8\. Install Java 17 or newer"):
        find_java()


def test_java_missing(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    with pytest.raises(JavaMissingError, match="has no bin/java.*apt-get install openjdk-17-jre-headless"):
        find_java()
    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(JavaMissingError, match="no `java` on PATH"):
        find_java()


def test_cli_without_java_prints_one_clear_sentence(tmp_path: Path, corpus: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = str(Path(sys.executable).parent)  # python, but no java
    proc = subprocess.run(
        [sys.executable, "-m", "flows.cli", "stage", "ingest", "--in", str(corpus), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 2
    assert "Spark needs Java 17+ and none was found" in proc.stderr
    assert "Traceback" not in proc.stderr and "Py4J" not in proc.stderr
