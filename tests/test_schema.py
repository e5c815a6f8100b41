"""The document schema and its validation of Parquet inputs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import SchemaError
from pipelines.schema import DOCUMENT_SCHEMA, check_schema, document_id, validate_dataset


def test_schema_has_the_documented_columns() -> None:
    assert DOCUMENT_SCHEMA.names[:8] == ["id", "url", "title", "text", "source", "fetched_at", "lang", "lang_score"]
    assert pa.types.is_map(DOCUMENT_SCHEMA.field("annotations").type)
    documented = (Path(__file__).parent.parent / "docs" / "schema.md").read_text()
    for name in DOCUMENT_SCHEMA.names:
        assert f"`{name}`" in documented, f"docs/schema.md does not document {name}"


def test_spark_type_conversion_round_trips(spark) -> None:
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    converted = to_arrow_schema(from_arrow_schema(DOCUMENT_SCHEMA), timezone="UTC")
    check_schema(converted, "round trip")


def test_valid_dataset_passes(tmp_path: Path) -> None:
    pq.write_table(DOCUMENT_SCHEMA.empty_table(), tmp_path / "part-0.parquet")
    (tmp_path / "_rejects").mkdir()
    pq.write_table(pa.table({"x": [1]}), tmp_path / "_rejects" / "part-0.parquet")  # ignored: starts with _
    (tmp_path / "_SUCCESS").write_text("{}")  # a finished stage output (without it: refused as unfinished)
    assert validate_dataset(tmp_path) == [tmp_path / "part-0.parquet"]


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    pq.write_table(DOCUMENT_SCHEMA.empty_table().drop_columns(["text"]), tmp_path / "part-3.parquet")
    with pytest.raises(SchemaError, match=r"part-3\.parquet: missing column 'text'"):
        validate_dataset(tmp_path)


def test_wrong_type_names_file_column_and_types(tmp_path: Path) -> None:
    table = DOCUMENT_SCHEMA.empty_table().drop_columns(["text"]).append_column("text", pa.array([], pa.int64()))
    pq.write_table(table, tmp_path / "p.parquet")
    with pytest.raises(SchemaError, match=r"p\.parquet: column 'text' has type int64, expected string"):
        validate_dataset(tmp_path)


def test_compatible_variants_are_accepted() -> None:
    schema = pa.schema(
        [
            (f.name, pa.large_string() if f.type == pa.string() else pa.float64() if f.name == "lang_score" else f.type)
            for f in DOCUMENT_SCHEMA
        ]
    )
    check_schema(schema, "variant")


def test_unreadable_and_empty_inputs(tmp_path: Path) -> None:
    (tmp_path / "x.parquet").write_text("not parquet at all")
    with pytest.raises(SchemaError, match=r"x\.parquet: not a readable Parquet file"):
        validate_dataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SchemaError, match="no Parquet files"):
        validate_dataset(empty)
    with pytest.raises(SchemaError, match="no such file"):
        validate_dataset(tmp_path / "missing")


def test_document_ids_are_stable_and_distinct() -> None:
    assert document_id("web", "a.html") == document_id("web", "a.html")
    assert document_id("web", "a.html") != document_id("web", "b.html")
    assert document_id("web", "a.html") != document_id("local", "a.html")
