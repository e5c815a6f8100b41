"""filters.decontam: word n-gram overlap of generated text with evaluation sets."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from filters.decontam import DecontamConfig, Decontaminator, EvalSetError, normalized_words

# 20 words
LONG_ITEM = ("The committee decided that the old bridge over the northern river must be closed "
             "to heavy trucks before winter")
LONG_WORDS = normalized_words(LONG_ITEM)
FIRST_13 = " ".join(LONG_WORDS[:13])
# 10 words
SHORT_ITEM = "Which planet in our solar system has the most moons?"


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def make(tmp_path: Path, rows: list, name: str = "eval.jsonl", **config) -> Decontaminator:
    path = write_jsonl(tmp_path / name, rows)
    return Decontaminator(DecontamConfig(eval_sets=[str(path)], **config))


class TestConfig:
    def test_defaults(self):
        config = DecontamConfig()
        assert (config.eval_sets, config.fields, config.ngram, config.min_ngram) == ([], None, 13, 8)

    def test_no_eval_sets_matches_nothing(self):
        dc = Decontaminator(DecontamConfig())
        assert dc.items == {} and dc.skipped == []
        assert dc.check(LONG_ITEM) is None

    def test_min_ngram_larger_than_ngram(self):
        with pytest.raises(EvalSetError, match=r"min_ngram \(9\) is larger than ngram \(5\)"):
            Decontaminator(DecontamConfig(ngram=5, min_ngram=9))

    def test_min_ngram_equal_to_ngram_is_fine(self, tmp_path):
        dc = make(tmp_path, [{"q": LONG_ITEM}], ngram=13, min_ngram=13)
        assert dc.check(LONG_ITEM) is not None

    def test_unknown_key(self):
        with pytest.raises(ValueError):
            DecontamConfig(eval_set=["x.jsonl"])


class TestMatching:
    def test_normalized_words(self):
        assert normalized_words("The  QUICK, brown-fox's \u201cjump\u201d!") == ["the", "quick", "brown-fox's", "jump"]

    def test_shared_13_gram_inside_longer_text(self, tmp_path):
        dc = make(tmp_path, [{"question": LONG_ITEM}])
        text = ("Here is my summary.   THE COMMITTEE decided, that the old bridge -- over the\n"
                "northern river... must be CLOSED and that is all.")
        assert dc.check(text) == ("eval.jsonl", FIRST_13)

    def test_any_window_of_the_item_matches(self, tmp_path):
        dc = make(tmp_path, [{"question": LONG_ITEM}])
        for start in range(len(LONG_WORDS) - 13 + 1):
            window = LONG_WORDS[start : start + 13]
            assert dc.check("prefix words " + " ".join(window).upper() + " suffix") == ("eval.jsonl", " ".join(window))

    def test_12_shared_words_do_not_match(self, tmp_path):
        dc = make(tmp_path, [{"question": LONG_ITEM}])
        assert dc.check(" ".join(LONG_WORDS[:12])) is None
        assert dc.check("Intro. " + " ".join(LONG_WORDS[1:13]) + " unrelated ending words here") is None
        # 13 words with one changed
        changed = LONG_WORDS[:13]
        changed[6] = "new"
        assert dc.check(" ".join(changed)) is None

    def test_word_order_matters(self, tmp_path):
        dc = make(tmp_path, [{"question": LONG_ITEM}])
        assert dc.check(" ".join(reversed(LONG_WORDS))) is None

    def test_short_item_matched_whole(self, tmp_path):
        dc = make(tmp_path, [{"question": SHORT_ITEM}])
        words = normalized_words(SHORT_ITEM)
        assert len(words) == 10
        assert dc.check("Quiz time! which PLANET in our solar-system".replace("-", " ") + " has the most moons??") == (
            "eval.jsonl", " ".join(words))
        assert dc.check(" ".join(words[:9])) is None  # part of a short item is not a match
        assert dc.check(" ".join(words[1:])) is None

    @pytest.mark.parametrize("n", [8, 9, 12, 13])
    def test_item_lengths_around_the_bounds(self, tmp_path, n):
        item = " ".join(f"token{i}" for i in range(n))
        dc = make(tmp_path, [item])
        assert dc.items == {"eval.jsonl": 1}
        assert dc.check(f"before {item} after") == ("eval.jsonl", item)

    @pytest.mark.parametrize("n", [1, 5, 7])
    def test_items_under_min_ngram_ignored(self, tmp_path, n):
        short = " ".join(f"token{i}" for i in range(n))
        dc = make(tmp_path, [short, {"q": LONG_ITEM}])
        assert dc.items == {"eval.jsonl": 1}
        assert dc.check(short) is None
        assert dc.check(f"a {short} b") is None

    def test_custom_ngram(self, tmp_path):
        dc = make(tmp_path, [{"q": LONG_ITEM}], ngram=5, min_ngram=3)
        assert dc.check("unrelated " + " ".join(LONG_WORDS[7:12]) + " unrelated") == ("eval.jsonl", " ".join(LONG_WORDS[7:12]))
        assert dc.check(" ".join(LONG_WORDS[7:11])) is None

    def test_non_latin_items(self, tmp_path):
        russian = "Какая планета Солнечной системы имеет больше всего спутников на сегодняшний день"
        chinese = "太阳系中哪颗行星拥有最多的卫星"  # 15 characters: 15 words
        dc = make(tmp_path, [{"q": russian}, {"q": chinese}])
        assert dc.items == {"eval.jsonl": 2}
        assert dc.check("Вопрос: какая планета солнечной системы имеет больше всего спутников на сегодняшний день?") == (
            "eval.jsonl", russian.lower())
        found = dc.check("问题：太阳系中哪颗行星拥有最多的卫星？")
        assert found is not None and found[0] == "eval.jsonl"
        assert found[1] == " ".join("太阳系中哪颗行星拥有最多的卫"[:13])

    def test_first_eval_set_named_for_a_shared_ngram(self, tmp_path):
        a = write_jsonl(tmp_path / "a.jsonl", [{"q": LONG_ITEM}])
        b = write_jsonl(tmp_path / "b.jsonl", [{"q": LONG_ITEM}, {"q": SHORT_ITEM}])
        dc = Decontaminator(DecontamConfig(eval_sets=[str(a), str(b)]))
        assert dc.items == {"a.jsonl": 1, "b.jsonl": 2}
        assert dc.check(LONG_ITEM) == ("a.jsonl", FIRST_13)
        assert dc.check(SHORT_ITEM)[0] == "b.jsonl"

    def test_clean_text(self, tmp_path):
        dc = make(tmp_path, [{"q": LONG_ITEM}, {"q": SHORT_ITEM}])
        assert dc.check("") is None
        assert dc.check("A completely different paragraph about cooking pasta with garlic and olive oil tonight.") is None


class TestJsonl:
    def test_every_string_walked(self, tmp_path):
        rows = [
            {"id": "x1", "question": {"text": LONG_ITEM, "choices": ["short", SHORT_ITEM]}, "answer": 3},
            ["a list row", {"deep": [[{"deeper": "Name the largest ocean on planet Earth by its total surface area"}]]}],
            "A bare string row that is long enough to be an item by itself",
            42,
            None,
        ]
        dc = make(tmp_path, rows)
        # LONG_ITEM, SHORT_ITEM, the ocean question, the bare string (ids, numbers, short strings ignored)
        assert dc.items == {"eval.jsonl": 4}
        assert dc.check(LONG_ITEM) is not None
        assert dc.check(SHORT_ITEM) is not None
        assert dc.check("name the largest ocean on planet earth by its total surface area") is not None
        assert dc.check("a bare string row that is long enough to be an item by itself") is not None

    def test_fields_restrict_keys(self, tmp_path):
        rows = [
            {"question": LONG_ITEM, "answer": SHORT_ITEM},
            {"meta": {"question": "Name the largest ocean on planet Earth by its total surface area"}},
            {"question": {"nested": ["Which metal is liquid at room temperature and used in old thermometers"]}},
        ]
        dc = make(tmp_path, rows, fields=["question"])
        assert dc.items == {"eval.jsonl": 3}
        assert dc.check(LONG_ITEM) is not None
        assert dc.check(SHORT_ITEM) is None  # "answer" is not a field
        assert dc.check("name the largest ocean on planet earth by its total surface area") is not None  # key at any depth
        assert dc.check("which metal is liquid at room temperature and used in old thermometers") is not None  # under the key

    def test_fields_matching_nothing_is_an_error(self, tmp_path):
        with pytest.raises(EvalSetError, match=r"eval\.jsonl: no evaluation item of at least 8 words \(fields: prompt\)"):
            make(tmp_path, [{"question": LONG_ITEM}], fields=["prompt"])

    def test_malformed_lines_skipped_and_listed(self, tmp_path):
        path = tmp_path / "broken.jsonl"
        path.write_text(
            json.dumps({"q": LONG_ITEM}) + "\n"
            "{not json\n"
            "\n"
            + json.dumps({"q": SHORT_ITEM}) + "\n"
            '{"q": "unterminated\n'
            + json.dumps({"q": "Name the largest ocean on planet Earth by its total surface area"}) + "\n",
            encoding="utf-8",
        )
        dc = Decontaminator(DecontamConfig(eval_sets=[str(path)]))
        assert dc.items == {"broken.jsonl": 3}
        assert len(dc.skipped) == 2
        assert dc.skipped[0].startswith(f"{path}:2: ")
        assert dc.skipped[1].startswith(f"{path}:5: ")
        assert all("not valid JSON" in s for s in dc.skipped)
        assert dc.check(LONG_ITEM) is not None and dc.check(SHORT_ITEM) is not None
        assert dc.check("name the largest ocean on planet earth by its total surface area") is not None

    def test_invalid_utf8_is_replaced_not_fatal(self, tmp_path):
        path = tmp_path / "latin1.jsonl"
        path.write_bytes(json.dumps({"q": LONG_ITEM}).encode() + b"\n" + b'{"q": "caf\xe9 ' + b"word " * 12 + b'"}\n')
        dc = Decontaminator(DecontamConfig(eval_sets=[str(path)]))
        assert dc.items == {"latin1.jsonl": 2}
        assert dc.skipped == []

    def test_only_short_items_is_an_error_naming_the_file(self, tmp_path):
        path = write_jsonl(tmp_path / "tiny.jsonl", [{"q": "too short"}, {"q": "seven words are not quite enough here"}])
        with pytest.raises(EvalSetError) as info:
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))
        assert str(path) in str(info.value)
        assert "no evaluation item of at least 8 words" in str(info.value)
        assert "every string" in str(info.value)

    def test_all_lines_malformed_is_an_error(self, tmp_path):
        path = tmp_path / "junk.jsonl"
        path.write_text("{oops\n[1, 2\n", encoding="utf-8")
        with pytest.raises(EvalSetError, match="junk.jsonl"):
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))


class TestOtherFormats:
    def test_json_list_of_records(self, tmp_path):
        path = tmp_path / "eval.json"
        path.write_text(json.dumps([{"question": LONG_ITEM, "answer": "B"}, {"question": SHORT_ITEM}]), encoding="utf-8")
        dc = Decontaminator(DecontamConfig(eval_sets=[str(path)]))
        assert dc.items == {"eval.json": 2}
        assert dc.check("so " + LONG_ITEM) == ("eval.json", FIRST_13)

    def test_json_with_fields(self, tmp_path):
        path = tmp_path / "eval.json"
        path.write_text(json.dumps({"data": [{"question": LONG_ITEM, "context": SHORT_ITEM}]}), encoding="utf-8")
        dc = Decontaminator(DecontamConfig(eval_sets=[str(path)], fields=["context"]))
        assert dc.items == {"eval.json": 1}
        assert dc.check(SHORT_ITEM) is not None
        assert dc.check(LONG_ITEM) is None

    def test_invalid_json_is_an_error(self, tmp_path):
        path = tmp_path / "bad.json"
        path.write_text('[{"q": "x"', encoding="utf-8")
        with pytest.raises(EvalSetError, match=r"bad\.json: not valid JSON"):
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))

    def test_txt_one_item_per_line(self, tmp_path):
        path = tmp_path / "eval.txt"
        path.write_text(f"{LONG_ITEM}\n\n   \nshort line\n  {SHORT_ITEM}  \n", encoding="utf-8")
        dc = Decontaminator(DecontamConfig(eval_sets=[str(path)]))
        assert dc.items == {"eval.txt": 2}
        assert dc.skipped == []
        assert dc.check(LONG_ITEM) == ("eval.txt", FIRST_13)
        assert dc.check(SHORT_ITEM) == ("eval.txt", " ".join(normalized_words(SHORT_ITEM)))
        # lines are separate items: words across a line break are not one n-gram
        assert dc.check(" ".join(LONG_WORDS[-6:]) + " short line " + " ".join(normalized_words(SHORT_ITEM)[:5])) is None

    def test_txt_only_short_lines(self, tmp_path):
        path = tmp_path / "short.txt"
        path.write_text("short line\n\nalso short\n", encoding="utf-8")
        with pytest.raises(EvalSetError, match=r"short\.txt: no evaluation item"):
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))

    def test_suffix_case_insensitive(self, tmp_path):
        path = tmp_path / "EVAL.TXT"
        path.write_text(LONG_ITEM + "\n", encoding="utf-8")
        assert Decontaminator(DecontamConfig(eval_sets=[str(path)])).items == {"EVAL.TXT": 1}

    def test_parquet_string_columns(self, tmp_path):
        path = tmp_path / "eval.parquet"
        table = pa.table({
            "question": [LONG_ITEM, "short"],
            "answer": [SHORT_ITEM, None],
            "label": [1, 2],
            "big": pa.array(["Name the largest ocean on planet Earth by its total surface area", "x"], type=pa.large_string()),
        })
        pq.write_table(table, path)
        dc = Decontaminator(DecontamConfig(eval_sets=[str(path)]))
        assert dc.items == {"eval.parquet": 3}
        assert dc.check("quiz: " + LONG_ITEM) == ("eval.parquet", FIRST_13)
        assert dc.check(SHORT_ITEM) is not None
        assert dc.check("name the largest ocean on planet earth by its total surface area") is not None

    def test_parquet_fields(self, tmp_path):
        path = tmp_path / "eval.parquet"
        pq.write_table(pa.table({
            "question": [LONG_ITEM],
            "answer": [SHORT_ITEM],
            "choices": [["Which metal is liquid at room temperature and used in old thermometers", "b"]],
        }), path)
        dc = Decontaminator(DecontamConfig(eval_sets=[str(path)], fields=["answer", "choices"]))
        assert dc.items == {"eval.parquet": 2}
        assert dc.check(LONG_ITEM) is None
        assert dc.check(SHORT_ITEM) is not None
        assert dc.check("which metal is liquid at room temperature and used in old thermometers") is not None

    def test_parquet_missing_field_column(self, tmp_path):
        path = tmp_path / "eval.parquet"
        pq.write_table(pa.table({"question": [LONG_ITEM], "answer": ["B"]}), path)
        with pytest.raises(EvalSetError) as info:
            Decontaminator(DecontamConfig(eval_sets=[str(path)], fields=["question", "prompt"]))
        message = str(info.value)
        assert str(path) in message
        assert "no column prompt" in message
        assert "columns: question, answer" in message

    def test_parquet_without_string_columns(self, tmp_path):
        path = tmp_path / "numbers.parquet"
        pq.write_table(pa.table({"a": [1, 2], "b": [0.5, 1.5]}), path)
        with pytest.raises(EvalSetError, match=r"numbers\.parquet: no string column"):
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))

    def test_parquet_short_strings_only(self, tmp_path):
        path = tmp_path / "short.parquet"
        pq.write_table(pa.table({"q": ["a b c", "d e"]}), path)
        with pytest.raises(EvalSetError, match=r"short\.parquet: no evaluation item"):
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))

    def test_not_a_parquet_file(self, tmp_path):
        path = tmp_path / "fake.parquet"
        path.write_bytes(b"this is not parquet at all")
        with pytest.raises(EvalSetError, match=r"fake\.parquet: not a readable Parquet file"):
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))


class TestFileErrors:
    def test_missing_file(self, tmp_path):
        path = tmp_path / "nope.jsonl"
        with pytest.raises(EvalSetError, match=r"nope\.jsonl: evaluation set not found"):
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))

    def test_directory_is_not_a_file(self, tmp_path):
        folder = tmp_path / "sets.jsonl"
        folder.mkdir()
        with pytest.raises(EvalSetError, match="not found"):
            Decontaminator(DecontamConfig(eval_sets=[str(folder)]))

    @pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl.gz", ""])
    def test_unknown_suffix(self, tmp_path, suffix):
        path = tmp_path / f"eval{suffix}"
        path.write_text(LONG_ITEM + "\n", encoding="utf-8")
        with pytest.raises(EvalSetError, match="unknown evaluation set format") as info:
            Decontaminator(DecontamConfig(eval_sets=[str(path)]))
        assert str(path) in str(info.value)

    def test_error_in_second_set_names_it(self, tmp_path):
        good = write_jsonl(tmp_path / "good.jsonl", [{"q": LONG_ITEM}])
        with pytest.raises(EvalSetError, match=r"missing\.txt"):
            Decontaminator(DecontamConfig(eval_sets=[str(good), str(tmp_path / "missing.txt")]))


def test_eval_sets_with_the_same_file_name_are_told_apart(tmp_path: Path) -> None:
    item = "the quick brown fox jumps over the lazy dog near the quiet river bank"
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "test.jsonl").write_text(json.dumps({"q": item}) + "\n")
    sets = [str(tmp_path / "a" / "test.jsonl"), str(tmp_path / "b" / "test.jsonl")]
    dc = Decontaminator(DecontamConfig(eval_sets=sets))
    assert dc.items == {sets[0]: 1, sets[1]: 1}
    assert dc.check(item)[0] == sets[0]  # the first set that holds the n-gram


def test_a_pickled_decontaminator_still_matches_in_another_process(tmp_path: Path) -> None:
    import pickle
    import subprocess
    import sys

    path = tmp_path / "eval.txt"
    path.write_text("the quick brown fox jumps over the lazy dog near the quiet river bank\n")
    blob = pickle.dumps(Decontaminator(DecontamConfig(eval_sets=[str(path)])))
    code = (
        "import pickle, sys; dc = pickle.loads(sys.stdin.buffer.read()); "
        "print(dc.check('Yes: The quick brown fox jumps over the lazy dog near the quiet river bank!'))"
    )
    # PYTHONHASHSEED differs from this process's, so shipped hashes could not match there
    out = subprocess.run([sys.executable, "-c", code], input=blob, capture_output=True, check=True,
                         env={**__import__("os").environ, "PYTHONHASHSEED": "12345"})
    assert "eval.txt" in out.stdout.decode()
