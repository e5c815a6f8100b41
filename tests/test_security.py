"""Security properties, each proven against the real code path:

* SSRF: the crawler never connects to a non-public address unless ``allow_private`` is set,
  however the address is spelled (decimal, octal, hex, short IPv4 forms, IPv6 loopback and
  IPv4-mapped forms, 0.0.0.0), whatever a DNS name resolves to, through redirects, and not
  through an environment proxy either. Every connection attempt is spied on and anything but
  127.0.0.1 is refused by the spy, so a regression can never reach another machine.
* Path traversal: hostile names in records, file names, WARC-Target-URIs and recipe values
  never make a stage write outside its output tree; archives are not unpacked.
* Recipes cannot execute code: YAML ``!!python/...`` tags are refused (in files and in
  ``--set``), no production code evaluates or imports a recipe value, and a YAML alias bomb
  is refused at once instead of being expanded.
* Secrets: the OpenAI-compatible endpoint's key (from the environment) and credentials in its
  URL never land in any file of a stage's output or state, the run report, the Prefect report
  artifact's text, logs, stdout/stderr or error messages, even when the endpoint echoes the
  Authorization header back in its errors and its model list.
"""

from __future__ import annotations

import ast
import gzip
import io
import itertools
import json
import logging
import socket
import sys
import tarfile
import time
import zipfile
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from flows.cli import app
from flows.recipe import RecipeError, load_recipe, validate_recipe_data
from pipelines.fetch import AddressGuard, CrawlConfig, HostFetcher, blocked_reason
from tests.faultserver import FaultServer, hang
from tests.sitegen import TestSite
from tests.test_synth_openai import SECRET, FakeServer, Reply, server  # noqa: F401 (fixture)
from tests.test_synth_stages import ScriptedBackend

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


# ============================================================================ SSRF
@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address the fetcher tries to connect to; anything but 127.0.0.1 is refused here,
    so a test that fails can never reach beyond this machine's loopback test servers."""
    import urllib3.util.connection as u3conn

    calls: list[str] = []
    real = u3conn.create_connection

    def spy(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        calls.append(address[0])
        if address[0] != "127.0.0.1":
            raise OSError(f"test refuses to connect to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(u3conn, "create_connection", spy)
    return calls


def fast(**overrides: Any) -> CrawlConfig:
    settings: dict[str, Any] = dict(
        allow_private=False, per_host_delay_s=0.0, global_rate_per_s=1000.0,
        connect_timeout_s=1.0, read_timeout_s=1.0, retries=0,
    )
    settings.update(overrides)
    return CrawlConfig(**settings)


def fetch_as_in_scope(url: str, config: CrawlConfig, guard: AddressGuard | None = None):
    """Fetch ``url`` with its own host in scope (the refusal must come from the address check)."""
    from urllib.parse import urlsplit

    from pipelines.fetch import normalize_url

    norm = normalize_url(url)
    assert norm is not None, url
    with HostFetcher(config, seed_hosts=[urlsplit(norm).hostname or ""], guard=guard) as fetcher:
        return fetcher.fetch(url)


LOOPBACK_SPELLINGS = [
    "localhost",
    "LocalHost.",
    "127.0.0.1",
    "127.0.0.1.",
    "127.1",  # short forms: a.b -> a.0.0.b
    "127.0.1",
    "2130706433",  # one decimal number
    "0x7f.1",  # hex
    "0x7f000001",
    "0x7f.0x0.0x0.0x1",
    "017700000001",  # octal
    "0177.0.0.1",
    "0177.1",
    "127.000.000.001",
    "127.0.0.2",  # all of 127/8 is loopback
    "127.255.255.254",
    "0.0.0.0",  # "this host": Linux connects it to loopback
    "0",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::1%25lo]",  # with a zone id
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::127.0.0.1]",  # IPv4-compatible (deprecated)
    "[::]",
    "[64:ff9b::7f00:1]",  # NAT64 around 127.0.0.1
    "[2002:7f00:1::]",  # 6to4 around 127.0.0.1
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_loopback_in_any_spelling_is_refused_before_connecting(host: str, connections: list[str]) -> None:
    with TestSite(pages=1, special=False) as site:
        for obey_robots in (True, False):  # refused for robots.txt and for the page itself
            result = fetch_as_in_scope(f"http://{host}:{site.port}/docs/page-0.html", fast(obey_robots=obey_robots))
            assert result.error == "private_address", (host, result.error, result.detail)
            assert result.status is None and result.body is None
        assert len(site.hits) == 0
    assert connections == []


def test_allow_private_lets_loopback_through(connections: list[str]) -> None:
    """The positive control: the same fetch reaches the site when private addresses are allowed."""
    with TestSite(pages=1, special=False) as site:
        result = fetch_as_in_scope(f"http://localhost:{site.port}/docs/page-0.html", fast(allow_private=True))
        assert result.ok and site.hits.count("/docs/page-0.html") == 1
    assert set(connections) == {"127.0.0.1"}


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Names made to resolve to given addresses through ``socket.getaddrinfo`` itself (what the
    fetcher's system resolver calls); other names resolve as usual."""
    answers: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        if isinstance(host, str) and host.lower().rstrip(".") in answers:
            out = []
            for address in answers[host.lower().rstrip(".")]:
                family = socket.AF_INET6 if ":" in address else socket.AF_INET
                sockaddr = (address, int(port or 0), 0, 0) if family == socket.AF_INET6 else (address, int(port or 0))
                out.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
            return out
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return answers


def test_names_that_resolve_to_loopback_are_refused(dns: dict[str, list[str]], connections: list[str]) -> None:
    dns.update(
        {
            "loopback.example": ["127.0.0.1"],
            "v6.example": ["::1"],
            "mapped.example": ["::ffff:127.0.0.1"],
            "unspecified.example": ["0.0.0.0"],
            "mixed.example": ["93.184.216.34", "127.0.0.1"],  # one bad answer among good ones
            "internal.example": ["10.0.0.5"],
            "metadata.example": ["169.254.169.254"],
        }
    )
    with TestSite(pages=1, special=False) as site:
        for name in dns:
            result = fetch_as_in_scope(f"http://{name}:{site.port}/docs/page-0.html", fast(obey_robots=False))
            assert result.error == "private_address", (name, result.error, result.detail)
            assert dns[name][-1] in (result.detail or "")  # the refused answer is named
        assert len(site.hits) == 0
        # The fake DNS is live: with private addresses allowed the same name reaches the site.
        allowed = fetch_as_in_scope(f"http://loopback.example:{site.port}/docs/page-0.html", fast(allow_private=True))
        assert allowed.ok and site.hits.count("/docs/page-0.html") == 1
    assert set(connections) == {"127.0.0.1"}  # only the allowed fetch connected


REDIRECT_TARGETS = [
    "http://rebound.example:{port}/",  # a name resolving to 127.0.0.3
    "http://2130706434:{port}/",  # 127.0.0.2 as one number
    "http://0x7f.2:{port}/",
    "http://017700000002:{port}/",
    "http://127.1.2.3:{port}/",
    "http://0.0.0.0:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.2]:{port}/",
    "http://10.0.0.1/",
    "http://169.254.169.254/latest/meta-data/",
]


def test_redirects_to_non_public_addresses_are_refused(dns: dict[str, list[str]], connections: list[str]) -> None:
    """A "public" host (127.0.0.1, classified public for this test only) redirects to loopback
    and private addresses in many spellings: every hop is refused at its connection, and with
    robots.txt on, already at the target's robots.txt."""
    dns.update({"public.example": ["127.0.0.1"], "rebound.example": ["127.0.0.3"]})
    guard = AddressGuard(allow_private=False, classify=lambda ip: None if str(ip) == "127.0.0.1" else blocked_reason(ip))
    with TestSite(pages=1, special=False) as site:
        base = f"http://public.example:{site.port}"
        domains = ["public.example", "rebound.example", "2130706434", "0x7f.2", "017700000002", "127.1.2.3",
                   "0.0.0.0", "::1", "::ffff:7f00:2", "10.0.0.1", "169.254.169.254"]
        for obey_robots in (False, True):
            config = fast(seeds=[base + "/"], allowed_domains=domains, obey_robots=obey_robots)
            with HostFetcher(config, guard=guard) as fetcher:
                assert fetcher.fetch(base + "/docs/page-0.html").ok  # the public host itself is fine
                for template in REDIRECT_TARGETS:
                    target = template.format(port=site.port)
                    result = fetcher.fetch(f"{base}/redirect/to?url={target}")
                    assert result.error == "private_address", (target, obey_robots, result.error, result.detail)
                    if not obey_robots:
                        assert len(result.redirects) == 1 and result.status is None
        assert {h.host for h in site.hits} == {f"public.example:{site.port}"}
    assert set(connections) == {"127.0.0.1"}


def test_environment_proxies_are_not_used(monkeypatch: pytest.MonkeyPatch, connections: list[str]) -> None:
    """A proxy would connect on the crawler's behalf, past the address check: it is never used."""
    with FaultServer(hang) as proxy, TestSite(pages=1, special=False) as site:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        refused = fetch_as_in_scope(f"http://localhost:{site.port}/docs/page-0.html", fast())
        assert refused.error == "private_address"
        allowed = fetch_as_in_scope(site.url("/docs/page-0.html"), fast(allow_private=True))
        assert allowed.ok and site.hits.count("/docs/page-0.html") == 1
        assert proxy.connections == 0


# ============================================================================ path traversal
HOSTILE_NAMES = [
    "../../../../escape-dotdot",
    "/tmp/escape-absolute",
    "..",
    "nul\x00byte",
    "x" * 5000,
    "C:\\escape\\windows",
    "~/escape-home",
    "file:///etc/passwd",
]


@pytest.mark.parametrize(
    "name", ["..", ".", "...", "../escape", "/abs", "a/b", "a\\b", "a\x00b", "x" * 101, "", "~root"]
)
def test_recipe_name_cannot_leave_the_build_directory(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """build/<name> is the default output of `corpusforge run`: '..' would be the current directory."""
    monkeypatch.chdir(tmp_path)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"name": name, "stages": ["ingest"]}))
    for args in (["validate", str(recipe)], ["run", str(recipe), "--dry-run"],
                 ["validate", str(tmp_path / "r.yaml"), "--set", f"name={json.dumps(name)}"]):
        result = runner.invoke(app, args)
        assert isinstance(result.exception, RecipeError), (name, args, result.output)
        assert "name:" in str(result.exception)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]  # nothing was created


ODD_FILE_NAMES = ("..hidden.txt", "a..b.txt", "-rf.txt", "name\nwith newline.txt", "back\\slash.md", "y" * 250 + ".txt")


def _snapshot(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _write_hostile_inputs(root: Path) -> None:
    root.mkdir()
    records = [{"id": name, "url": name, "title": name, "file": name, "path": name,
                "text": f"Record {i} has a hostile name in every field but its text, which is plain prose."}
               for i, name in enumerate(HOSTILE_NAMES)]
    (root / "records.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    pq.write_table(pa.Table.from_pylist(records), root / "records.parquet")
    # File names that are legal but odd (a name cannot hold '/' or NUL).
    for name in ODD_FILE_NAMES:
        (root / name).write_text("A small text file with an odd name and an ordinary sentence in it.\n")
    # Archives with traversal members: ingest does not read archives, so nothing is unpacked.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for member in ("../../escape-tar.txt", "/tmp/escape-tar-absolute.txt"):
            data = b"archived text\n"
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    (root / "evil.tar").write_bytes(buffer.getvalue())
    (root / "evil.tar.gz").write_bytes(gzip.compress(buffer.getvalue()))
    with zipfile.ZipFile(root / "evil.zip", "w") as archive:
        archive.writestr("../../escape-zip.txt", "archived text\n")


def _hostile_warc(path: Path) -> list[str]:
    uris = [
        "../../../../escape-warc.html",
        "/tmp/escape-warc-absolute.html",
        "file:///etc/passwd",
        "http://h.example/../../../../escape-warc-http.html",
        "http://h.example/%2e%2e/%2e%2e/escape",
        "http://h.example/a\x00b",
        "http://h.example/" + "z" * 3000,
        "..",
    ]
    with open(path, "wb") as handle:
        writer = WARCWriter(handle, gzip=True)
        for i, uri in enumerate(uris):
            html = f"<html><head><title>{i}</title></head><body><p>Page {i} of a hostile archive, with a sentence.</p></body></html>"
            headers = StatusAndHeaders("200 OK", [("Content-Type", "text/html; charset=utf-8")], protocol="HTTP/1.1")
            writer.write_record(writer.create_warc_record(uri, "response", payload=io.BytesIO(html.encode()),
                                                          http_headers=headers))
    return uris


def test_hostile_names_in_inputs_stay_inside_the_output_tree(spark, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ingest (JSONL, Parquet, odd file names, archives) and ingest-warc (hostile Target-URIs)
    write only under their outputs; the hostile strings come through as data."""
    from pipelines.ingest import IngestConfig, IngestStage
    from pipelines.stage import run_stage
    from pipelines.warc import IngestWarcStage, WarcIngestConfig

    sandbox = tmp_path / "cwd"
    sandbox.mkdir()
    monkeypatch.chdir(sandbox)  # a relative "../x" would land beside the sandbox, a bare "x" in it
    inputs, warcs = tmp_path / "inputs", tmp_path / "warcs"
    _write_hostile_inputs(inputs)
    warcs.mkdir()
    uris = _hostile_warc(warcs / "hostile.warc.gz")
    before = _snapshot(tmp_path)

    out_docs, out_warc = tmp_path / "out" / "ingest", tmp_path / "out" / "ingest-warc"
    ingest = run_stage(IngestStage(), [inputs], out_docs, IngestConfig(), lambda: spark)
    warc = run_stage(IngestWarcStage(), [warcs], out_warc, WarcIngestConfig(), lambda: spark)

    new = _snapshot(tmp_path) - before
    # The output trees, and beside each the stage contract's lock file.
    allowed = {tmp_path / "out", out_docs, out_warc, out_docs.parent / ".ingest.lock", out_warc.parent / ".ingest-warc.lock"}
    outside = sorted(str(p) for p in new if p not in allowed and out_docs not in p.parents and out_warc not in p.parents)
    assert outside == []
    assert not any(sandbox.iterdir())
    assert not list(tmp_path.parent.rglob("escape*"))  # nothing named after a hostile value, anywhere near
    for absolute in ("/tmp/escape-absolute", "/tmp/escape-tar-absolute.txt", "/tmp/escape-warc-absolute.html"):
        assert not Path(absolute).exists()

    docs = pq.read_table(out_docs).to_pylist()
    ids = {d["id"] for d in docs}
    assert {"../../../../escape-dotdot", "/tmp/escape-absolute", "nul\x00byte"} <= ids  # kept as data
    odd = {dict(d["metadata"])["file"] for d in docs if d["text"].startswith("A small text file")}
    # The odd names were read (ingest may skip hidden files, those starting with ".").
    assert {n for n in ODD_FILE_NAMES if not n.startswith(".")} <= odd <= set(ODD_FILE_NAMES)
    assert not any("archived text" in d["text"] for d in docs)  # archives are skipped, not unpacked
    skipped = ingest.stats["files"]["skipped_by_extension"]
    assert {k: skipped.get(k) for k in (".tar", ".tar.gz", ".zip")} == {".tar": 1, ".tar.gz": 1, ".zip": 1}
    pages = pq.read_table(out_warc).to_pylist()
    # http(s) records come through with their URI as data; others are not pages and are not read.
    assert {p["url"] for p in pages} == {u for u in uris if u.startswith("http")}
    assert warc.stats["docs_out"] == len(pages)


# ============================================================================ recipes run no code
TAGS = [
    '!!python/object/apply:os.system ["touch {marker}"]',
    '!!python/object/new:os.system ["touch {marker}"]',
    "!!python/name:os.system",
    "!!python/module:os",
    '!!python/object:pathlib.Path {{}}',
    '!!python/object/apply:subprocess.check_output [["touch", "{marker}"]]',
]


@pytest.mark.parametrize("tag", TAGS, ids=[t.split()[0].split(":", 1)[1] for t in TAGS])
def test_python_yaml_tags_are_refused(tag: str, tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    value = tag.format(marker=marker)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: demo\nstages: [ingest]\ningest:\n  source: {value}\n")
    result = runner.invoke(app, ["validate", str(recipe)])
    assert isinstance(result.exception, RecipeError)
    message = str(result.exception)
    assert f"{recipe}:4: not valid YAML" in message and "could not determine a constructor for the tag" in message
    # The same value through --set, on validate and on a stage run.
    for args in (["validate", str(tmp_path / "ok.yaml"), "--set", f"ingest.source={value}"],
                 ["stage", "ingest", "--in", str(tmp_path), "--out", str(tmp_path / "out"), "--set", f"name={value}"]):
        (tmp_path / "ok.yaml").write_text("stages: [ingest]\n")
        result = runner.invoke(app, args)
        assert isinstance(result.exception, RecipeError), result.output
        assert "--set" in str(result.exception) and "value is not valid YAML" in str(result.exception)
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_refused_tag_is_a_clear_error_on_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from flows import cli

    marker = tmp_path / "PWNED"
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    monkeypatch.setattr(sys, "argv", ["corpusforge", "validate", str(recipe)])
    with pytest.raises(SystemExit) as info:
        cli.main()
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "could not determine a constructor" in err and "python/object/apply:os.system" in err
    assert "Traceback" not in err and not marker.exists()


def test_yaml_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    """Eight levels of nine aliases: 43 million strings (a 300 MB text) once expanded, from
    under 1 KB of YAML; each level more multiplies that by nine."""
    lines = ["bomb:", '  - &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    lines += ["spark:", "  conf:", "    spark.bomb: *a7"]
    recipe = tmp_path / "bomb.yaml"
    recipe.write_text("\n".join(lines) + "\n")
    assert recipe.stat().st_size < 1024
    started = time.monotonic()
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert time.monotonic() - started < 2.0
    assert "spark.conf.spark.bomb: Input should be a valid string" in str(info.value)
    assert len(str(info.value)) < 2000


CODE_LOADING_SPARK_KEYS = [
    "spark.driver.extraJavaOptions", "spark.executor.extraClassPath", "spark.jars", "spark.jars.packages",
    "spark.submit.pyFiles", "spark.archives", "spark.pyspark.python", "spark.python.worker.module",
    "spark.executorEnv.LD_PRELOAD", "spark.plugins", "spark.extraListeners", "spark.sql.extensions",
    "spark.kubernetes.container.image", "spark.executor.resource.gpu.discoveryScript",
]


@pytest.mark.parametrize("key", CODE_LOADING_SPARK_KEYS)
def test_a_recipe_file_cannot_make_spark_load_code(key: str, tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: demo\nstages: [ingest]\nspark:\n  conf:\n    spark.executor.memory: 2g\n    {key}: /tmp/x\n")
    with pytest.raises(RecipeError) as info:
        load_recipe(recipe)
    assert f"{recipe}:6: spark.conf: {key} would let the recipe load or run code" in str(info.value)
    assert f"--set spark.conf.{key}=VALUE" in str(info.value)
    # The operator's own command line may set it (docs/scaling.md ships jars and environments so).
    recipe.write_text("name: demo\nstages: [ingest]\n")
    assert load_recipe(recipe, [f"spark.conf.{key}=/tmp/x"]).spark.conf == {key: "/tmp/x"}


def test_tuning_settings_in_a_recipe_file_are_fine(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("stages: [ingest]\nspark:\n  conf:\n    spark.executor.memory: 8g\n"
                      "    spark.sql.adaptive.enabled: true\n    spark.driver.maxResultSize: 2g\n")
    assert load_recipe(recipe).spark.conf["spark.executor.memory"] == "8g"


def test_a_log_path_with_spaces_and_quotes_stays_one_jvm_option(spark, tmp_path: Path) -> None:
    """Spark's own parser splits extraJavaOptions: a log path with white space or quotes (an
    output directory the user named so) must not become extra JVM options."""
    from pipelines.spark import SparkSettings, spark_conf

    log = tmp_path / 'my builds' / 'it\'s "here" -Dinjected=1' / "spark.log"
    options = spark_conf(SparkSettings(log_file=str(log)))["spark.driver.extraJavaOptions"]
    jvm = spark.sparkContext._jvm
    parsed = [str(o) for o in jvm.scala.jdk.javaapi.CollectionConverters.asJava(
        jvm.org.apache.spark.util.Utils.splitCommandString(options))]
    assert len(parsed) == 2 and parsed[1] == f"-Dcorpusforge.spark.log={log}"
    assert parsed[0].startswith("-Dlog4j2.configurationFile=file:")


PRODUCTION = ("pipelines", "synth", "flows", "filters")
# Calls that run or import code chosen by data, or deserialize into arbitrary objects.
DANGEROUS_NAMES = {"eval", "exec", "compile", "__import__", "breakpoint"}
DANGEROUS_ATTRS = {
    ("importlib", "import_module"), ("yaml", "load"), ("yaml", "load_all"), ("yaml", "unsafe_load"),
    ("yaml", "unsafe_load_all"), ("yaml", "full_load"), ("yaml", "full_load_all"), ("pickle", "load"),
    ("pickle", "loads"), ("marshal", "loads"), ("os", "system"), ("os", "popen"), ("runpy", "run_path"),
    ("runpy", "run_module"), ("cloudpickle", "loads"), ("dill", "loads"),
}
# Reviewed uses: stage.code_modules are class attributes naming the stage's own modules (for its
# code fingerprint), never recipe values.
ALLOWED = {("pipelines/stage.py", "importlib.import_module")}


def test_no_production_code_evaluates_or_imports_data() -> None:
    found = []
    for package in PRODUCTION:
        for path in sorted((REPO / package).rglob("*.py")):
            rel = str(path.relative_to(REPO))
            tree = ast.parse(path.read_text(), rel)
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                func = node.func
                if isinstance(func, ast.Name) and func.id in DANGEROUS_NAMES:
                    found.append((rel, node.lineno, func.id))
                elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                    name = f"{func.value.id}.{func.attr}"
                    if (func.value.id, func.attr) in DANGEROUS_ATTRS and (rel, name) not in ALLOWED:
                        found.append((rel, node.lineno, name))
                for keyword in node.keywords:  # yaml.load(..., Loader=yaml.Loader) and the like
                    if keyword.arg == "Loader" or (keyword.arg == "shell" and getattr(keyword.value, "value", False)):
                        found.append((rel, node.lineno, f"{keyword.arg}="))
    assert found == []
    # The allowed import reads class attributes only.
    stage_src = (REPO / "pipelines" / "stage.py").read_text()
    assert "importlib.import_module(name) for name in stage.code_modules" in stage_src


def test_recipe_loader_is_the_safe_one() -> None:
    """flows.recipe parses recipe files and --set values with yaml.safe_load only."""
    source = (REPO / "flows" / "recipe.py").read_text()
    tree = ast.parse(source)
    loaders = {f"{n.func.value.id}.{n.func.attr}" for n in ast.walk(tree) if isinstance(n, ast.Call)
               and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name) and n.func.value.id == "yaml"}
    assert loaders == {"yaml.safe_load", "yaml.compose"}
    # yaml.compose builds nodes only (for error line numbers), and only for text that safe_load
    # accepted: it constructs no Python objects from tags.
    data = {"name": "demo", "ingest": {"source": "!!python/object/apply:os.system [echo]"}}
    recipe = validate_recipe_data(data, "dict")  # a tag inside a string is just text
    assert recipe.ingest.source == "!!python/object/apply:os.system [echo]"


# ============================================================================ secrets
URL_PASSWORD = "urlpassw0rd-do-not-leak"


def _all_text(root: Path) -> Iterator[tuple[Path, str]]:
    """Every file under ``root`` as text, and every Parquet file's rows too (its pages are
    compressed, so the raw bytes alone would hide a leaked string)."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        yield path, data.decode("latin-1")
        if data[:4] == b"PAR1":
            yield path, repr(pq.read_table(path).to_pylist())


def _secret_sets(url: str, section: str = "self_instruct") -> list[str]:
    values = {
        "backend": "openai",
        "model": "test-model",
        "openai.base_url": url.replace("http://", f"http://user:{URL_PASSWORD}@"),
        "openai.max_retries": 1,
        "openai.backoff_s": 0.01,
        "openai.timeout_s": 5,
        "openai.concurrency": 2,
    }
    return [arg for key, value in values.items() for arg in ("--set", f"{section}.generation.{key}={value}")]


def _assert_nothing_leaks(texts: list[tuple[str, str]]) -> None:
    for where, text in texts:
        assert SECRET not in text, f"the API key leaked into {where}"
        assert URL_PASSWORD not in text, f"the URL password leaked into {where}"


@pytest.fixture
def echoing(server: FakeServer, monkeypatch: pytest.MonkeyPatch) -> FakeServer:
    """A careless endpoint: it lists the caller's Authorization header among its models, and
    its errors echo the request headers (500s, retried, and 400s, not retried); the other
    requests get scripted replies that self-instruct can use."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    calls = itertools.count(1)

    def responder(body: dict[str, Any]) -> Reply:
        n = next(calls)
        echo = json.dumps(server.headers[-1])
        if n % 4 == 1:
            return Reply(status=500, body=echo)
        if n % 4 == 2:
            return Reply(status=400, body={"error": {"message": f"rejected; you sent {echo}"}})
        return Reply(content=ScriptedBackend().reply(body["messages"][-1]["content"], body.get("seed", 0)))

    server.responder = responder
    server.models_reply = Reply(body={"object": "list", "data": [{"id": "other-model"}, {"id": f"Bearer {SECRET}"}]})
    return server


def test_api_key_never_leaks_from_a_stage_run(
    echoing: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    from flows.report import render_markdown, write_report

    caplog.set_level(logging.DEBUG)
    out = tmp_path / "si"
    result = runner.invoke(
        app,
        ["-v", "stage", "self-instruct", "--out", str(out), "--set", "self_instruct.max_rounds=1",
         "--set", "self_instruct.prompts_per_round=3", *_secret_sets(echoing.url)],
    )
    assert result.exit_code == 0, result.output
    # The key was sent, and the server did echo it back.
    assert all(h.get("Authorization") == f"Bearer {SECRET}" for h in echoing.headers)
    stats = json.loads((out / "_stats.json").read_text())
    assert stats["docs_out"] > 0 and any(r.startswith("generation:") for r in stats["dropped"])

    # The run report and the text of its Prefect markdown artifact, made from this output.
    summary = {"stage": "self-instruct", "skipped": False, "output": str(out),
               **{k: stats[k] for k in ("docs_in", "docs_out", "bytes_in", "bytes_out", "dropped", "wall_seconds")}}
    build = tmp_path / "build"
    write_report(build, "secrets", [summary])
    report = json.loads((build / "report" / "summary.json").read_text())
    artifact = render_markdown("secrets", report["output"], report["sections"], images=False)

    captured = capfd.readouterr()
    texts = [(str(p), t) for p, t in _all_text(tmp_path)]
    texts += [("stdout/stderr", result.output), ("fd stdout", captured.out), ("fd stderr", captured.err),
              ("logs", caplog.text), ("artifact", artifact)]
    _assert_nothing_leaks(texts)
    # The echoes themselves were kept, masked: the test saw the paths where a key would leak.
    rejects = repr(pq.read_table(out / "_rejects").to_pylist())
    assert "Bearer ***" in rejects
    assert "Bearer ***" in result.output  # the model list warning and the retry warnings
    assert "retry 1 of 1" in result.output


@pytest.mark.parametrize("where", ["chat", "models"])
def test_api_key_never_leaks_when_the_endpoint_rejects_it(
    echoing: FakeServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], where: str
) -> None:
    """401 with the request headers in the body: the stage fails, with the key masked."""
    echoing.responder = lambda body: Reply(status=401, body=json.dumps(echoing.headers[-1]))
    if where == "models":
        echoing.models_reply = Reply(status=401, body={"error": {"message": f"bad key: Bearer {SECRET}"}})
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "si"
    result = runner.invoke(app, ["-v", "stage", "self-instruct", "--out", str(out), *_secret_sets(echoing.url)])
    assert result.exit_code != 0
    message = str(result.exception)
    assert "401" in message and "OPENAI_API_KEY" in message and "***" in message
    import traceback

    trace = "".join(traceback.format_exception(result.exception))
    captured = capfd.readouterr()
    texts = [(str(p), t) for p, t in _all_text(tmp_path)]
    texts += [("stdout/stderr", result.output), ("fd stdout", captured.out), ("fd stderr", captured.err),
              ("logs", caplog.text), ("error", message), ("traceback", trace)]
    _assert_nothing_leaks(texts)
    assert not (out / "_SUCCESS").exists()
