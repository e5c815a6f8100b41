"""The second language-ID model (CLD2), the fastText + CLD2 ensemble, and one code system."""

from __future__ import annotations

import pickle
import sys

import pytest

from bench import langid_eval
from filters.langid import LanguageIdentifier, make_identifier
from filters.langid_ensemble import Cld2Identifier, Cld2MissingError, EnsembleIdentifier, load_params
from filters.langtags import by_language, canonical, with_script

# Measured on the test half (odd UDHR articles, 4,826 strings, 175 languages): macro accuracy
# fastText 0.561, CLD2 0.816, ensemble 0.861; on the 134 languages lid.176 can name: 0.733 and
# 0.839. The issue asks for at least +0.08 over lid.176 alone.
REQUIRED_GAIN = 0.08


@pytest.fixture(scope="module")
def test_half() -> list[dict]:
    return langid_eval.load_set(split="test")


@pytest.fixture(scope="module")
def ensemble() -> EnsembleIdentifier:
    return make_identifier("ensemble")


# --- codes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "model", "code"),
    [
        ("iw", "cld2", "he"),  # CLD2's old code for Hebrew
        ("jw", "cld2", "jv"),
        ("tl", "cld2", "fil"),
        ("zh", "cld2", "zh-Hans"),  # CLD2's "zh" is Simplified, "zh-Hant" Traditional
        ("zh-Hant", "cld2", "zh-Hant"),
        ("zh", "fasttext", "zh"),  # lid.176 cannot tell the scripts apart
        ("als", "fasttext", "gsw"),  # lid.176's Alemannic, not ISO's Tosk Albanian
        ("no", "fasttext", "nb"),
        ("cmn", None, "zh"),
        ("zsm", None, "ms"),
        ("zlm", None, "ms"),
        ("pt-BR", None, "pt"),
        ("sr-Cyrl", None, "sr-Cyrl"),
        ("bs-Latn", None, "bs"),
    ],
)
def test_canonical_codes(tag: str, model: str | None, code: str) -> None:
    assert canonical(tag, model) == code


def test_serbian_gets_the_script_of_its_text() -> None:
    assert with_script("sr", "Сва људска бића рађају се слободна") == "sr-Cyrl"
    assert with_script("sr", "Sva ljudska bića rađaju se slobodna") == "sr-Latn"
    assert with_script("hr", "Сва људска") == "hr"


def test_a_key_without_script_matches_every_script() -> None:
    assert [by_language(code, {"zh": 0.5}) for code in ("zh-Hant", "zh-Hans", "zh")] == [0.5, 0.5, 0.5]
    assert by_language("zh-Hans", {"zh-Hant": 0.5}) is None
    assert by_language("en", {"zh": 0.5}) is None


def test_fasttext_labels_use_the_same_codes() -> None:
    identifier = LanguageIdentifier()
    (label, _), = identifier.predict(["Сва људска бића рађају се слободна и једнака у достојанству и правима."])
    assert label == "sr-Cyrl"


# --- CLD2 alone ----------------------------------------------------------------------------


def test_cld2_identifies_clear_sentences() -> None:
    identifier = make_identifier("cld2")
    texts = {
        "de": "Alle Menschen sind frei und gleich an Würde und Rechten geboren.",
        "zu": "Bonke abantu bazalwa bekhululekile belingana ngesithunzi nangamalungelo.",
        "haw": "Hānau kūʻokoʻa ʻia nā kānaka apau loa, a ua kūlike ko lākou kūlana hanohano.",
        "zh-Hant": "人人生而自由，在尊嚴和權利上一律平等。他們賦有理性和良心。",
    }
    predicted = identifier.predict(list(texts.values()))
    assert [label for label, _ in predicted] == list(texts)
    assert all(0.5 < score <= 1.0 for _, score in predicted)


def test_cld2_survives_what_it_calls_invalid_utf8() -> None:
    identifier = make_identifier("cld2")
    hostile = ["", "   ", "\x00\x01 binary \x9f\x85", "lone \ud800 surrogate text here", "\ufffe\uffff\ufdd0 noncharacters"]
    predicted = identifier.predict(hostile)
    assert predicted[0] == (None, 0.0) and predicted[1] == (None, 0.0)
    assert len(predicted) == len(hostile)
    assert all(label is None or isinstance(label, str) for label, _ in predicted)


def test_missing_pycld2_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pycld2", None)
    with pytest.raises(Cld2MissingError, match=r"pip install pycld2"):
        Cld2Identifier()
    with pytest.raises(Cld2MissingError, match=r"pip install pycld2"):
        make_identifier("ensemble")


def test_unknown_model_is_an_error() -> None:
    with pytest.raises(ValueError, match="fasttext, cld2, ensemble"):
        make_identifier("langdetect")


# --- the ensemble --------------------------------------------------------------------------


def test_ensemble_pickles_as_its_arguments(ensemble: EnsembleIdentifier) -> None:
    clone = pickle.loads(pickle.dumps(ensemble))
    assert len(pickle.dumps(ensemble)) < 500  # no model bytes travel to the workers
    texts = ["Saya suka makan nasi goreng di pagi hari bersama keluarga saya.", "Ein kurzer Satz."]
    assert clone.predict(texts) == ensemble.predict(texts)


def test_ensemble_chinese_scripts_and_empty_text(ensemble: EnsembleIdentifier) -> None:
    predicted = ensemble.predict(
        [
            "我们今天去商店买了很多东西，然后回家做饭。这个城市的交通非常方便。",
            "我們今天去商店買了很多東西，然後回家做飯。這個城市的交通非常方便。",
            "",
        ]
    )
    assert [label for label, _ in predicted] == ["zh-Hans", "zh-Hant", None]
    assert predicted[2] == (None, 0.0)


def test_ensemble_beats_fasttext_on_the_held_out_half(test_half: list[dict]) -> None:
    texts = [r["text"] for r in test_half]
    languages = {r["lang"] for r in test_half}
    assert len(languages) >= 90
    fasttext_known = {r["lang"] for r in test_half if "fasttext" in r["known_by"]}
    predicted = {name: [label for label, _ in make_identifier(name).predict(texts)] for name in ("fasttext", "ensemble")}
    for subset in (None, fasttext_known):
        base = langid_eval.macro(test_half, predicted["fasttext"], subset)
        ours = langid_eval.macro(test_half, predicted["ensemble"], subset)
        print(f"\nmacro accuracy over {len(subset or languages)} languages: fasttext {base:.4f}, ensemble {ours:.4f}")
        assert ours >= base + REQUIRED_GAIN


def test_ensemble_score_is_calibrated(ensemble: EnsembleIdentifier, test_half: list[dict]) -> None:
    predicted = ensemble.predict([r["text"] for r in test_half])
    right = [langid_eval.is_right(label, r["lang"]) for (label, _), r in zip(predicted, test_half)]
    scores = [score for _, score in predicted]
    error = langid_eval.expected_calibration_error(scores, right)
    print(f"\nensemble ECE on the test half: {error:.4f}")
    assert error < 0.05
    mean_right = sum(s for s, ok in zip(scores, right) if ok) / sum(right)
    mean_wrong = sum(s for s, ok in zip(scores, right) if not ok) / (len(right) - sum(right))
    assert mean_right > mean_wrong + 0.2


def test_tuning_never_reads_the_test_half(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Scrambling every test-half label (and the second domain's) leaves the tuned rule unchanged."""
    monkeypatch.setattr(langid_eval, "CLD2_WEIGHTS", (0.5, 2.0))
    monkeypatch.setattr(langid_eval, "GAMMAS", (0.0, 2.0))
    monkeypatch.setattr(langid_eval, "DEFAULT_TRUSTS", (0.5,))
    monkeypatch.setattr(langid_eval, "FASTTEXT_CONFIDENT", (0.9, 2.0))
    clean = langid_eval.tune(tmp_path / "clean.json")

    real_load, real_gettext = langid_eval.load_set, langid_eval.gettext_set

    def scrambled(rows: list[dict]) -> list[dict]:
        return [dict(r, lang="xx") if r["split"] == "test" else r for r in rows]

    monkeypatch.setattr(langid_eval, "load_set", lambda path=langid_eval.DATA, split=None: scrambled(real_load(path))
                        if split is None else [r for r in scrambled(real_load(path)) if r["split"] == split])
    monkeypatch.setattr(langid_eval, "gettext_set", lambda: scrambled(real_gettext()))
    assert langid_eval.tune(tmp_path / "scrambled.json") == clean


def test_shipped_rule_is_complete() -> None:
    params = load_params()
    rule = params["ensemble"]
    assert set(rule) >= {"weights", "gamma", "default_trust", "fasttext_confident", "trust", "calibration"}
    assert len(rule["calibration"]) == 6 and len(params["cld2"]["calibration"]) == 3
    assert all(0.0 < t < 1.0 for table in rule["trust"].values() for t in table.values())


# --- through the langid stage ------------------------------------------------------------


def test_keep_keys_use_the_code_system() -> None:
    from pipelines.langid import LangIdConfig, decide_language

    config = LangIdConfig(keep={"no": 0.5, "iw": 0.5, "zh": 0.3, "sr-Latn": 0.4})
    assert config.keep == {"nb": 0.5, "he": 0.5, "zh": 0.3, "sr-Latn": 0.4}
    assert decide_language("zh-Hant", 0.9, config.keep) is None  # a key without script keeps every script
    assert decide_language("sr-Latn", 0.9, config.keep) is None
    assert decide_language("sr-Cyrl", 0.9, config.keep) == ("language_not_kept", "sr-Cyrl (0.90)")
    assert decide_language("zh-Hans", 0.2, config.keep) == ("score_below_threshold", "zh-Hans 0.20 < 0.30")
    assert decide_language(None, 0.0, config.keep) == ("no_language", "no prediction")
    with pytest.raises(ValueError, match="same language"):
        LangIdConfig(keep={"no": 0.5, "nb": 0.6})


def test_ensemble_stage_keeps_languages_fasttext_cannot_name(spark, tmp_path) -> None:
    """model: ensemble through the real stage: Zulu and Shona (not in lid.176) are named and kept."""
    from pipelines.langid import LangIdConfig, LangIdStage
    from pipelines.stage import run_stage
    from tests.test_stages_filters import read_output, write_documents

    docs = {
        "zu": "Bonke abantu bazalwa bekhululekile belingana ngesithunzi nangamalungelo. Banikwe umcabango nanembeza.",
        "sn": "Vanhu vese vanoberekwa vakasununguka uye vakaenzana pakodzero nechiremera. Vakapiwa njere nehana.",
        "de": "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und Gewissen begabt.",
        "zh-Hant": "人人生而自由，在尊嚴和權利上一律平等。他們賦有理性和良心，並應以兄弟關係的精神相對待。",
    }
    inputs = write_documents(tmp_path / "in", [{"id": k, "text": v} for k, v in docs.items()])
    config = LangIdConfig(model="ensemble", keep={"zu": 0.3, "sn": 0.3, "zh": 0.3})
    result = run_stage(LangIdStage(), [inputs], tmp_path / "out", config, lambda: spark)
    kept = read_output(tmp_path / "out")
    assert {k: v["lang"] for k, v in kept.items()} == {"zu": "zu", "sn": "sn", "zh-Hant": "zh-Hant"}
    assert all(0.3 <= v["lang_score"] <= 1.0 for v in kept.values())
    assert result.stats["dropped"] == {"langid:language_not_kept": {"docs": 1, "bytes": len(docs["de"].encode())}}
    assert result.stats["languages"] == {"zu": 1, "sn": 1, "zh-Hant": 1}
