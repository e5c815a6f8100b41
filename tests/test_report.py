"""The run report: index.html with real PNG plots, summary.md / summary.json, and the Prefect
artifacts, written from the _stats.json of real stage runs (Spark stages on a small corpus,
a dialogues stage against a loopback OpenAI-compatible server)."""

from __future__ import annotations

import json
import re
import threading
from html.parser import HTMLParser
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from flows.recipe import default_recipe
from flows.report import artifact_keys, publish_report_artifacts, stage_summary, write_report
from flows.runner import execute_stage
from pipelines.stage import LENGTH_EDGES
from tests.conftest import write_corpus
from tests.test_synth_stages import FlakyChatServer

HOSTILE_URL = "https://evil.test/<script>alert(1)</script>?a=1&b=2"

ARTICLES = [
    # Three distinct English articles that pass the default quality filters.
    [
        "The old harbour town grew around a narrow inlet where fishing boats could shelter from winter storms.",
        "Merchants later built stone warehouses along the quay, and the town became a busy port for wool and timber.",
        "When the railway arrived, most of the trade moved inland, and many of the warehouses were turned into homes.",
        "Today visitors walk along the restored quay, eat at small restaurants, and watch the ferries leave for the islands.",
        "The local museum keeps maps, ship models and letters that tell how families lived through good years and bad ones.",
        "Every summer the town holds a festival with music, boat races and a market that fills the main square.",
    ],
    [
        "Bees are essential pollinators for many of the crops that people eat every day, from apples to almonds.",
        "A single colony can contain tens of thousands of workers, each with a task that changes as it grows older.",
        "Young bees clean cells and feed larvae, while older bees leave the hive to collect nectar and pollen.",
        "Beekeepers inspect their hives regularly to check the health of the queen and to look for signs of disease.",
        "In recent decades, habitat loss and pesticides have reduced the number of wild bees in many regions.",
        "Planting a variety of flowers that bloom at different times of the year is one way gardeners can help them.",
    ],
    [
        "Learning to cook at home saves money and gives you full control over the ingredients that go into a meal.",
        "Start with a few simple dishes, such as soups, omelettes and roasted vegetables, and practise them until they feel easy.",
        "A sharp knife, a heavy pan and a wooden spoon are enough equipment for most recipes that beginners attempt.",
        "Taste the food while it cooks and adjust the salt, acid and heat a little at a time rather than all at once.",
        "Cooking with friends or family makes the work lighter and turns an ordinary evening into a pleasant occasion.",
        "Over time you will learn which shortcuts work for you and which steps are worth the extra effort.",
    ],
]


def _text(lines: list[str]) -> str:
    return "\n".join(lines)


def _report_corpus(root: Path) -> Path:
    """conftest's mixed corpus plus documents the quality filters keep, near-duplicates (a
    cluster of 3 and one of 2), an exact duplicate, and a page with markup in its URL."""
    corpus = write_corpus(root)
    harbour, bees, cooking = (_text(a) for a in ARTICLES)
    records = [
        {"id": "harbour", "text": harbour, "url": "https://example.org/harbour"},
        {"id": "harbour-2", "text": harbour.replace("winter storms", "autumn storms"), "url": "https://example.org/h2"},
        {"id": "harbour-3", "text": harbour.replace("busy port", "busy harbour"), "url": "https://example.org/h3"},
        {"id": "bees", "text": bees, "url": "https://example.org/bees"},
        {"id": "bees-2", "text": bees.replace("every day", "each day"), "url": "https://example.org/bees-2"},
        {"id": "cooking", "text": cooking, "url": "https://example.org/cooking"},
        {"id": "cooking-copy", "text": cooking, "url": "https://mirror.example.org/cooking"},
        # the one document C4's curly-bracket rule drops: the example of its reason names the URL
        {"id": "hostile", "text": cooking + "\nThe card in the corner says {serves four} in small letters.", "url": HOSTILE_URL},
    ]
    (corpus / "articles.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return corpus


@pytest.fixture(scope="module")
def build(spark, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real build: ingest → langid → quality → dedup-exact → dedup-minhash, dialogues, tokenize."""
    root = tmp_path_factory.mktemp("report")
    corpus = _report_corpus(root / "corpus")
    server = ThreadingHTTPServer(("127.0.0.1", 0), FlakyChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/v1"
    recipe = default_recipe(
        [
            "dialogues.num_dialogues=6", "dialogues.per_partition=3", "dialogues.min_turns=1", "dialogues.max_turns=2",
            "dialogues.sectors={world: 1}", "dialogues.topics.subjects=[volcanoes, bees, trains]",
            "dialogues.generation.backend=openai", "dialogues.generation.model=tiny",
            f"dialogues.generation.openai.base_url={url}", "dialogues.generation.openai.max_retries=1",
            "dialogues.generation.openai.backoff_s=0.01", "dialogues.generation.openai.timeout_s=5",
        ]
    )
    out = root / "build"
    results = {}
    try:
        previous = [corpus]
        for name in ["ingest", "langid", "quality", "dedup-exact", "dedup-minhash"]:
            results[name] = execute_stage(recipe, name, previous, out / name)
            previous = [out / name]
        results["dialogues"] = execute_stage(recipe, "dialogues", [], out / "dialogues")
        results["tokenize"] = execute_stage(recipe, "tokenize", [out / "dedup-minhash", out / "dialogues"], out / "tokenize")
    finally:
        server.shutdown()
    return {"root": root, "out": out, "results": results, "stages": [stage_summary(r) for r in results.values()]}


class Page(HTMLParser):
    """What the tests look at in index.html: tables (id → rows of cell texts), images, links, tags."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self.title = ""
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]
        if tag == "table":
            self._table = a.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "img":
            self.images.append(a["src"] or "")
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_title:
            self.title += data


def parse(index: Path) -> Page:
    page = Page()
    page.feed(index.read_text(encoding="utf-8"))
    page.close()
    return page


def body(page: Page, table: str) -> list[list[str]]:
    return page.tables[table][1:]  # without the header row


def n(cell: str) -> int:
    return int(cell.replace(",", ""))


def assert_real_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        assert 300 <= width <= 2000 and 150 <= height <= 2000, image.size
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 10, "a blank or nearly blank image"
    assert max(c for c, _ in colours) < 0.97 * width * height


def assert_self_contained(page: Page, report_dir: Path) -> None:
    assert "script" not in page.tags and "link" not in page.tags
    for url in page.urls:
        assert "://" not in url and not url.startswith(("//", "/")), url
    for src in page.images:
        assert src.startswith("plots/") and src.endswith(".png")
        assert_real_png(report_dir / src)


def test_length_histograms_in_the_stage_stats(build: dict[str, Any]) -> None:
    for name, result in build["results"].items():
        stats = json.loads((result.output / "_stats.json").read_text())
        hist = stats["length_histogram"]
        assert hist["edges"] == [*LENGTH_EDGES, None]
        assert hist["edges"][:4] == [0, 64, 128, 256] and hist["edges"][-2] == 16 << 20
        assert len(hist["in"]) == len(hist["out"]) == len(hist["edges"]) - 1
        assert sum(hist["in"]) == stats["docs_in"] and sum(hist["out"]) == stats["docs_out"], name
    # the kept documents' lengths, bucket by bucket (ingest: UTF-8 bytes of the extracted text)
    import pyarrow.parquet as pq

    texts = pq.read_table(build["out"] / "ingest", columns=["text"]).column("text").to_pylist()
    expected = [0] * len(LENGTH_EDGES)
    for text in texts:
        size = len(text.encode())
        expected[max(i for i, edge in enumerate(LENGTH_EDGES) if size >= edge)] += 1
    assert json.loads((build["out"] / "ingest" / "_stats.json").read_text())["length_histogram"]["out"] == expected


def test_report_tables_and_plots(build: dict[str, Any]) -> None:
    out, stages, results = build["out"], build["stages"], build["results"]
    index = write_report(out, "report-test", stages)
    assert index == out / "report" / "index.html"
    report_dir = out / "report"
    page = parse(index)
    assert_self_contained(page, report_dir)
    plots = {Path(src).name for src in page.images}
    assert plots == {"funnel.png", "drops.png", "languages-langid.png", "lengths.png", "dedup_clusters.png",
                     "synth_acceptance.png", "wall_time.png"}
    assert {p.name for p in (report_dir / "plots").iterdir()} == plots

    stats = {name: r.stats for name, r in results.items()}
    # the funnel: every stage, with its numbers; tokens counted at tokenize, estimated elsewhere
    funnel = {row[0]: row for row in body(page, "funnel")}
    header = page.tables["funnel"][0]
    assert list(funnel) == list(results)
    for name, s in stats.items():
        row = dict(zip(header, funnel[name]))
        assert n(row["docs in"]) == s["docs_in"] and n(row["docs out"]) == s["docs_out"], name
        assert row["status"] == "ran"
        if name == "tokenize":
            assert n(row["tokens out"]) == s["tokenize"]["tokens"]
        else:
            ratio = stats["tokenize"]["tokenize"]["tokens"] / stats["tokenize"]["bytes_out"]  # tokens per text byte
            assert row["tokens out"] == f"~{round(s['bytes_out'] * ratio):,} est."
    assert stats["quality"]["docs_out"] >= 5 and stats["dedup-minhash"]["docs_out"] < stats["dedup-minhash"]["docs_in"]

    # drops per rule and per filter, for every reason of every stage
    rules = {(r[0], f"{r[1]}:{r[2]}" if r[1] != "(input checks)" else r[2]): r for r in body(page, "drops-per-rule")}
    for name, s in stats.items():
        for reason, v in s["dropped"].items():
            assert n(rules[(name, reason)][3]) == v["docs"], (name, reason)
    assert ("ingest", "malformed_jsonl") in rules and ("quality", "gopher_quality:word_count") in rules
    assert ("dedup-exact", "dedup_exact:duplicate") in rules and ("dialogues", "generation:error") in rules
    per_filter = {(r[0], r[1]): n(r[2]) for r in body(page, "drops-per-filter")}
    quality_filters: dict[str, int] = {}
    for reason, v in stats["quality"]["dropped"].items():
        quality_filters[reason.split(":")[0]] = quality_filters.get(reason.split(":")[0], 0) + v["docs"]
    assert {f: c for (st, f), c in per_filter.items() if st == "quality"} == quality_filters
    assert per_filter[("ingest", "(input checks)")] == sum(v["docs"] for v in stats["ingest"]["dropped"].values())

    # languages, lengths, clusters, generation
    assert {r[0]: n(r[1]) for r in body(page, "languages-langid")} == stats["langid"]["languages"]
    lengths = page.tables["lengths"]
    assert lengths[0] == ["bytes", "ingest in (records)", "ingest out (before filtering)", "tokenize out (after filtering)"]
    assert sum(n(r[1]) for r in lengths[1:]) == stats["ingest"]["docs_in"]
    assert sum(n(r[2]) for r in lengths[1:]) == stats["ingest"]["docs_out"]
    assert sum(n(r[3]) for r in lengths[1:]) == stats["tokenize"]["docs_out"]
    sizes = {n(r[0]): n(r[1]) for r in body(page, "cluster-sizes")}
    assert sizes == {int(k): v for k, v in stats["dedup-minhash"]["cluster_sizes"].items()} == {2: 1, 3: 1}
    dedup = {(r[0], r[1]): n(r[2]) for r in body(page, "dedup")}
    assert dedup[("dedup-exact", "exact duplicates removed")] == stats["dedup-exact"]["duplicates_removed"] == 1
    assert dedup[("dedup-minhash", "documents removed")] == stats["dedup-minhash"]["docs_removed"] == 3
    generation = dict(zip(page.tables["generation"][0], body(page, "generation")[0]))
    gen = stats["dialogues"]["generation"]
    assert generation["stage"] == "dialogues" and n(generation["completion tokens"]) == gen["completion_tokens"]
    assert generation["completion tok/s"] == f"{gen['completion_tokens_per_s']:,.1f}"
    assert n(generation["failed"]) == gen["failed_requests"] > 0
    acceptance = {(r[0], r[1]): r[2] for r in body(page, "acceptance")}
    assert acceptance[("dialogues", "dialogues")] == f"{100 * stats['dialogues']['acceptance']['dialogues']:.1f}%"
    assert [r[0] for r in body(page, "timing")] == list(results)

    # summary.md keeps its table; summary.json keeps the stages and holds the tables
    md = (report_dir / "summary.md").read_text()
    assert "| ingest | ran |" in md and "](plots/lengths.png)" in md
    summary = json.loads((report_dir / "summary.json").read_text())
    assert summary["stages"] == stages and summary["recipe"] == "report-test"
    assert [f["docs_out"] for f in summary["funnel"]] == [s["docs_out"] for s in stats.values()]


def test_report_escapes_what_comes_from_data(build: dict[str, Any], tmp_path: Path) -> None:
    stages = [dict(s) for s in build["stages"]]
    quality = next(s for s in stages if s["stage"] == "quality")
    examples = json.loads((Path(quality["output"]) / "_stats.json").read_text())["examples"]
    assert HOSTILE_URL in examples["c4:curly_bracket"][0]  # a real detail with markup in it
    quality["dropped"] = {**quality["dropped"], "evil:<b onmouseover=x>rule</b>": {"docs": 1, "bytes": 3}}
    name = "<script>alert('name')</script>"
    index = write_report(tmp_path, name, stages)
    raw = index.read_text()
    assert "<script" not in raw.lower() and "<b " not in raw
    assert "&lt;script&gt;alert(&#x27;name&#x27;)&lt;/script&gt;" in raw
    page = parse(index)
    assert page.title == f"corpusforge build {name}"
    rules = body(page, "drops-per-rule")
    assert ["quality", "evil", "<b onmouseover=x>rule</b>"] == rules[[r[1] for r in rules].index("evil")][:3]
    example = next(r[6] for r in rules if r[0] == "quality" and r[2] == "curly_bracket")
    assert example == examples["c4:curly_bracket"][0] and HOSTILE_URL in example
    assert "https://evil.test/&lt;script&gt;alert(1)&lt;/script&gt;?a=1&amp;b=2" in raw
    md = (tmp_path / "report" / "summary.md").read_text()
    assert "<script" not in md.lower() and "&lt;b onmouseover=x&gt;rule&lt;/b&gt;" in md


def test_sparse_builds_say_no_data(build: dict[str, Any], tmp_path: Path) -> None:
    by_name = {s["stage"]: s for s in build["stages"]}
    cases = {
        "ingest-only": [by_name["ingest"]],
        "synth-only": [by_name["dialogues"]],
        "nothing": [],
    }
    for case, stages in cases.items():
        out = tmp_path / case
        index = write_report(out, case, stages)
        page = parse(index)
        assert_self_contained(page, out / "report")
        text = index.read_text()
        if case != "synth-only":
            assert "No data: this build has no generation stage." in text
        assert "No data: this build has no langid stage." in text
        assert "No data: this build has no dedup stage." in text
        assert "No tokenize stage in this build" in text
        assert [r[0] for r in body(page, "funnel")] == [s["stage"] for s in stages]
    assert "No data: no corpus stage wrote a length histogram." in (tmp_path / "synth-only" / "report" / "index.html").read_text()
    assert {p.name for p in (tmp_path / "ingest-only" / "report" / "plots").iterdir()} >= {"funnel.png", "lengths.png"}
    assert not list((tmp_path / "nothing" / "report" / "plots").iterdir())

    # a rerun of the report drops the plots it has no data for any more
    rerun = tmp_path / "rerun"
    write_report(rerun, "rerun", build["stages"])
    assert (rerun / "report" / "plots" / "dedup_clusters.png").is_file()
    write_report(rerun, "rerun", [by_name["ingest"]])
    assert not (rerun / "report" / "plots" / "dedup_clusters.png").exists()


def test_a_stage_that_keeps_nothing(build: dict[str, Any], tmp_path: Path) -> None:
    recipe = default_recipe(["langid.keep={zz: 0.5}"])
    result = execute_stage(recipe, "langid", [build["out"] / "ingest"], tmp_path / "langid")
    assert result.stats["docs_out"] == 0 and result.stats["languages"] == {}
    assert sum(result.stats["length_histogram"]["out"]) == 0
    ingest = next(s for s in build["stages"] if s["stage"] == "ingest")
    index = write_report(tmp_path, "empty", [ingest, stage_summary(result)])
    page = parse(index)
    assert_self_contained(page, tmp_path / "report")
    assert body(page, "languages-langid") == [] and "No documents kept." in index.read_text()
    assert ["langid", "langid:language_not_kept"] == [[r[0], f"{r[1]}:{r[2]}"] for r in body(page, "drops-per-rule")
                                                      if r[0] == "langid"][0]


def test_publish_report_artifacts(build: dict[str, Any], prefect_server, tmp_path: Path) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    recipe_name = "Report_Test.v2"
    out = tmp_path / "build"
    write_report(out, recipe_name, build["stages"])

    @flow(name="report-artifacts")
    def publish() -> None:
        publish_report_artifacts(out, recipe_name)

    publish()
    report_key, funnel_key = artifact_keys(recipe_name)
    assert (report_key, funnel_key) == ("corpusforge-report-test-v2-report", "corpusforge-report-test-v2-funnel")
    assert all(re.fullmatch(r"[a-z0-9-]+", k) for k in (report_key, funnel_key))
    with get_client(sync_client=True) as client:
        found = {
            key: client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
            for key in (report_key, funnel_key)
        }
    markdown = found[report_key][-1]
    assert markdown.type == "markdown"
    for heading in ("## Documents and tokens through the stages", "## Drops per filter", "## Languages",
                    "## Document lengths", "## Deduplication", "## Synthetic data", "## Wall time per stage"):
        assert heading in markdown.data
    assert "| ingest | ran |" in markdown.data and "gopher_quality" in markdown.data
    assert "<script" not in markdown.data.lower()
    table = found[funnel_key][-1]
    assert table.type == "table"
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [r["stage"] for r in rows] == [s["stage"] for s in build["stages"]]
    assert [r["docs_out"] for r in rows] == [s["docs_out"] for s in build["stages"]]
