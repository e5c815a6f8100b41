"""Stage ``dedup-minhash``: near-duplicate removal with MinHash-LSH, clustered in Spark.

1. Signatures (identical to ``datasketch.MinHash``) and their LSH band hashes, computed in
   Arrow batches by ``filters.minhash`` (numpy, one call per document, no loop per hash).
2. Documents sharing a band hash are candidates: each bucket links its members to the
   bucket's smallest node, so a bucket of n documents gives n-1 edges, not n²/2.
3. Optional verification: the true Jaccard similarity of the two shingle sets of every
   candidate edge (64-bit shingle hashes from the signature pass, compared in the JVM with
   ``array_intersect``); edges below the threshold are dropped.
4. Connected components of the remaining edges (``pipelines.components``, in Spark; the edge
   list never reaches the driver). One document per component is kept: the earliest
   ``fetched_at``, then the smallest ``id``.

Incremental mode: ``reference`` names earlier outputs of this stage; their stored band and
shingle hashes (``_signatures/``) join the buckets, and a new document that falls in a cluster with
a reference document is dropped as ``seen_before``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import pyarrow as pa
from pydantic import BaseModel, Field

from filters.minhash import MinHashConfig
from pipelines.components import connected_components
from pipelines.errors import StageInputError
from pipelines.schema import BYTES_IN, DOCUMENT_COLUMNS, DROP_DETAIL, DROP_REASON
from pipelines.stage import STATS_FILE, Stage, union_all
from pipelines.storage import location

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SIGNATURES_DIR = "_signatures"
DUPLICATES_DIR = "_duplicates"
REFERENCE_PREFIX = "ref:"
# Settings that must match between a run and the references it is deduplicated against.
SIGNATURE_KEYS = (
    "num_perm", "seed", "scheme", "ngram", "char_ngram", "lowercase", "normalize_punctuation", "normalize_digits"
)


class DedupMinHashConfig(MinHashConfig):
    """Recipe section ``dedup``: MinHash/LSH settings, verification and incremental references."""

    verify: bool = Field(True, description="check the true Jaccard of every candidate pair")
    # Verification throws false candidates away, so the LSH bands favour recall: 14 bands × 9
    # rows at 128 permutations make a pair at Jaccard 0.8 a candidate 87% of the time (9 × 13,
    # the unweighted optimum, only 40%).
    false_positive_weight: float = Field(0.1, ge=0.0)
    false_negative_weight: float = Field(0.9, ge=0.0)
    reference: list[str] = Field(
        default_factory=list, description="earlier dedup-minhash outputs to deduplicate against"
    )



SIGNATURE_SCHEMA = "node string, band_hashes array<bigint>, shingle_hashes array<bigint>"


def _signature_rows(settings: dict[str, Any], bands: int, rows: int):  # type: ignore[no-untyped-def]
    def compute(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from filters.minhash import MinHashConfig, MinHasher, band_hash_matrix

        hasher = MinHasher(MinHashConfig(**{k: v for k, v in settings.items() if k in MinHashConfig.model_fields}))
        schema = pa.schema(
            [("node", pa.string()), ("band_hashes", pa.list_(pa.int64())), ("shingle_hashes", pa.list_(pa.int64()))]
        )
        for batch in batches:
            matrix, valid, shingle_hashes = hasher.signatures_and_shingle_hashes(
                batch.column("text").to_pylist(), batch.column("lang").to_pylist()
            )
            keys = band_hash_matrix(matrix, bands, rows).tolist()
            yield pa.RecordBatch.from_pydict(
                {
                    "node": batch.column("id"),
                    "band_hashes": [row if ok else None for row, ok in zip(keys, valid.tolist())],
                    "shingle_hashes": [h.tolist() if ok else None for h, ok in zip(shingle_hashes, valid.tolist())],
                },
                schema=schema,
            )

    return compute


class DedupMinHashStage(Stage):
    name = "dedup-minhash"
    section = "dedup"
    summary = "MinHash-LSH near-duplicate removal, clusters by connected components in Spark"
    Config = DedupMinHashConfig
    code_modules = ("filters.minhash", "filters.text", "pipelines.components")

    def _reference_signatures(self, spark: "SparkSession", config: DedupMinHashConfig) -> "DataFrame | None":
        """Stored signatures of the reference outputs, their nodes prefixed ``ref:``."""
        from pyspark.sql import functions as F

        if not config.reference:
            return None
        frames = []
        for ref in config.reference:
            root = location(ref)
            signatures = root / SIGNATURES_DIR
            if not signatures.is_dir():
                raise StageInputError(f"{root}: no {SIGNATURES_DIR}/ here; a reference must be a dedup-minhash output")
            try:
                ref_stats = json.loads((root / STATS_FILE).read_text())
                ref_config, ref_lsh = ref_stats["config"], ref_stats["lsh"]
            except (OSError, ValueError, KeyError) as exc:
                raise StageInputError(f"{root}: cannot read {STATS_FILE} of the reference ({exc})") from exc
            mismatched = [k for k in SIGNATURE_KEYS if ref_config.get(k) != getattr(config, k)]
            if (ref_lsh.get("bands"), ref_lsh.get("rows")) != config.lsh_params():
                mismatched.append("bands/rows")
            if mismatched:
                raise StageInputError(f"{root}: its MinHash settings differ from this run's ({', '.join(mismatched)})")
            frames.append(
                spark.read.parquet(str(signatures)).select(
                    F.concat(F.lit(REFERENCE_PREFIX), "id").alias("node"), "band_hashes", "shingle_hashes"
                )
            )
        return union_all(frames)

    def transform(self, spark: "SparkSession", inputs: list[Path], config: BaseModel) -> "DataFrame":
        from pyspark import StorageLevel
        from pyspark.sql import Window
        from pyspark.sql import functions as F

        assert isinstance(config, DedupMinHashConfig)
        bands, rows = config.lsh_params()
        settings = config.model_dump()
        # Not cached: the input is Parquet on disk already, and caching whole texts costs heap.
        documents = self.read_documents(spark, inputs)
        self._cached: list["DataFrame"] = []

        signatures = (
            documents.select("id", "text", "lang")
            .mapInArrow(_signature_rows(settings, bands, rows), SIGNATURE_SCHEMA)
            # On disk: the shingle hashes are ~10 KB a document and would crowd the JVM heap.
            .persist(StorageLevel.DISK_ONLY)
        )
        self._cached.append(signatures)
        reference = self._reference_signatures(spark, config)
        all_signatures = signatures if reference is None else signatures.unionByName(reference)

        buckets = all_signatures.where(F.col("band_hashes").isNotNull()).select(
            "node", F.posexplode("band_hashes").alias("band", "bucket")
        )
        bucket_min = Window.partitionBy("band", "bucket")
        edges = (
            buckets.withColumn("dst", F.min("node").over(bucket_min))
            .where(F.col("node") != F.col("dst"))
            .select(F.col("node").alias("src"), "dst")
            .distinct()
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        self._candidate_edges = edges
        self._cached.append(edges)
        if config.verify:
            # Exact Jaccard of the two shingle-hash sets, in the JVM: no Python, no second shingling.
            shingle_sets = all_signatures.select("node", "shingle_hashes")
            a = shingle_sets.select(F.col("node").alias("src"), F.col("shingle_hashes").alias("a"))
            b = shingle_sets.select(F.col("node").alias("dst"), F.col("shingle_hashes").alias("b"))
            jaccard = F.size(F.array_intersect("a", "b")) / F.size(F.array_union("a", "b"))
            edges = (
                edges.join(a, "src")
                .join(b, "dst")
                .where(jaccard >= config.threshold)
                .select("src", "dst")
                .persist(StorageLevel.MEMORY_AND_DISK)
            )
            self._cached.append(edges)
        self._verified_edges = edges

        components = connected_components(edges)
        node_info = documents.select(F.col("id").alias("node"), "fetched_at", F.lit(False).alias("is_ref"))
        if reference is not None:
            node_info = node_info.unionByName(
                reference.select("node", F.lit(None).cast("timestamp").alias("fetched_at"), F.lit(True).alias("is_ref"))
            )
        choose = Window.partitionBy("component").orderBy(
            F.col("is_ref").desc(), F.col("fetched_at").asc_nulls_last(), F.col("node").asc()
        )
        clusters = (
            components.withColumnRenamed("id", "node")
            .join(node_info, "node")
            .withColumn("representative", F.first("node").over(choose.rowsBetween(Window.unboundedPreceding, Window.currentRow)))
            .withColumn("size", F.count(F.lit(1)).over(Window.partitionBy("component")))
            .select("node", "component", "representative", "size", "is_ref")
            .persist(StorageLevel.MEMORY_AND_DISK)
        )
        self._clusters = clusters
        self._signatures = signatures
        self._cached.append(clusters)

        member = clusters.where(~F.col("is_ref")).select(
            F.col("node").alias("id"), "component", "representative"
        )
        joined = documents.join(member, "id", "left")
        from_reference = F.col("representative").startswith(REFERENCE_PREFIX)
        dropped = F.col("representative").isNotNull() & (F.col("representative") != F.col("id"))
        reason = F.when(dropped & from_reference, F.lit("dedup_minhash:seen_before")).when(
            dropped, F.lit("dedup_minhash:near_duplicate")
        )
        detail = F.when(
            dropped,
            F.concat(F.lit("id="), F.col("id"), F.lit(" near-duplicate of "), F.col("representative")),
        )
        return joined.select(
            *DOCUMENT_COLUMNS,
            reason.alias(DROP_REASON),
            detail.alias(DROP_DETAIL),
            F.octet_length("text").cast("long").alias(BYTES_IN),
        )

    def summarize(self, working: Any, stats: dict[str, Any], config: BaseModel) -> dict[str, Any]:
        from pyspark.sql import functions as F

        assert isinstance(config, DedupMinHashConfig)
        sizes = (
            self._clusters.select("component", "size").distinct().groupBy("size").count().orderBy("size").collect()
        )
        return {
            "lsh": {"bands": config.lsh_params()[0], "rows": config.lsh_params()[1], "num_perm": config.num_perm},
            "candidate_pairs": self._candidate_edges.count(),
            "verified_pairs": self._verified_edges.count() if config.verify else None,
            "clusters": sum(row["count"] for row in sizes),
            "cluster_sizes": {str(row["size"]): row["count"] for row in sizes},
            "docs_removed": sum(v["docs"] for r, v in stats["dropped"].items() if r.startswith("dedup_minhash:")),
            "documents_without_shingles": self._signatures.where(F.col("band_hashes").isNull()).count(),
        }

    def release(self) -> None:
        for frame in getattr(self, "_cached", []):
            frame.unpersist()

    def write_extras(self, output: Path, config: BaseModel) -> None:
        from pyspark.sql import functions as F

        self._clusters.where(~F.col("is_ref")).select(
            F.col("node").alias("id"),
            F.col("component").alias("cluster_id"),
            F.regexp_replace("representative", f"^{REFERENCE_PREFIX}", "").alias("representative"),
            F.col("representative").startswith(REFERENCE_PREFIX).alias("representative_in_reference"),
        ).coalesce(1).write.parquet(str(output / DUPLICATES_DIR))
        removed = self._clusters.where(F.col("node") != F.col("representative")).select(F.col("node").alias("id"))
        self._signatures.withColumnRenamed("node", "id").join(removed, "id", "left_anti").write.parquet(
            str(output / SIGNATURES_DIR)
        )

