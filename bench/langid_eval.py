"""Tune the fastText + CLD2 ensemble on the tune halves of the labelled sets; score all three on the test halves.

Usage::

    python -m bench.langid_eval tune            # writes filters/langid_ensemble.json
    python -m bench.langid_eval eval [--per-language bench/langid-per-language.md]

The main set is ``tests/data/udhr_lid.jsonl.gz`` (``bench/make_udhr_lid.py``): short strings
of the UDHR in 175 languages, in a ``tune`` half (preamble, even articles) and a ``test`` half
(odd articles). The second is the translated UI strings of this machine's gettext catalogues
(``tests/langid_data.py``: 21 languages), every other string in each half. ``tune`` reads
only the tune halves; ``eval`` reports only the test halves.

Tuning
------
Both domains are tuned on together. Tuned on the UDHR alone, the rule learnt to trust CLD2
wherever it spoke and lost 1.7 points to lid.176 on UI strings (CLD2 says English for Italian
strings full of English terms); so the objective is the mean of the two domains' macro
accuracies. A grid over the CLD2 weight (fastText's is 1), the trust exponent ``gamma``, the
trust of a label a model never said and the fastText probability that wins outright (see
:mod:`filters.langid_ensemble`) is scored with *cross-fitted* trust: the tune rows are cut in
two (by article, and every other UI string), and each part is scored with trust tables counted
on the other, so the grid cannot pick a setting that only memorised its own strings. The
chosen setting's final trust tables are counted on all tune rows; then the two calibrations
(ensemble and cld2 alone) are fitted there with scikit-learn's logistic regression.

Scoring
-------
Accuracy per language, and macro accuracy (the mean over languages, each language counting
once) over three sets of languages: all 175 (what a multilingual build needs), those both
models can name, and those lid.176 can name (where it has a fair chance). A prediction is
right when it is the gold code; lid.176's script-less ``zh`` counts as right for both
``zh-Hans`` and ``zh-Hant`` (it cannot tell them apart, and that is not held against it).
The UI strings are scored on their own test half. Speed is strings per second through each
identifier's ``predict`` in this process, best of 3. Calibration: expected calibration error
(10 bins) of each model's score as a probability of being right.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from filters.langid import LanguageIdentifier, make_identifier
from filters.langid_ensemble import PARAMS_FILE, cld2_features, combine, observations
from filters.langtags import base

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "udhr_lid.jsonl.gz"
CLD2_WEIGHTS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)
GAMMAS = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)
DEFAULT_TRUSTS = (0.25, 0.5, 0.75, 0.9)
FASTTEXT_CONFIDENT = (0.5, 0.7, 0.8, 0.9, 0.95, 2.0)  # 2.0: never


def load_set(path: Path = DATA, split: str | None = None) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [r for r in rows if split is None or r["split"] == split]


def is_right(predicted: str | None, gold: str) -> bool:
    return predicted == gold or (predicted is not None and "-" not in predicted and predicted == base(gold) != gold)


def trust_tables(rows: list[dict[str, Any]], seen: list[tuple[Any, ...]]) -> dict[str, dict[str, float]]:
    """Per model and label: (right + 1) / (said + 2) when the model's top answer was that label."""
    said: dict[str, dict[str, list[int]]] = {"fasttext": defaultdict(lambda: [0, 0]), "cld2": defaultdict(lambda: [0, 0])}
    for row, (ft, _reliable, cld) in zip(rows, seen):
        for model, candidates in (("fasttext", ft), ("cld2", cld)):
            if candidates:
                tally = said[model][candidates[0][0]]
                tally[0] += is_right(candidates[0][0], row["lang"])
                tally[1] += 1
    return {model: {code: (r + 1) / (n + 2) for code, (r, n) in table.items()} for model, table in said.items()}


def macro(rows: list[dict[str, Any]], predicted: Sequence[str | None], languages: set[str] | None = None) -> float:
    per = per_language(rows, predicted)
    chosen = [acc for lang, acc in per.items() if languages is None or lang in languages]
    return sum(chosen) / len(chosen) if chosen else 0.0


def per_language(rows: list[dict[str, Any]], predicted: Sequence[str | None]) -> dict[str, float]:
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for row, label in zip(rows, predicted):
        tally[row["lang"]][0] += is_right(label, row["lang"])
        tally[row["lang"]][1] += 1
    return {lang: r / n for lang, (r, n) in sorted(tally.items())}


def rule(
    weight: float, gamma: float, default: float, confident: float, trust: dict[str, dict[str, float]]
) -> dict[str, Any]:
    return {
        "weights": {"fasttext": 1.0, "cld2": weight},
        "gamma": gamma,
        "default_trust": default,
        "fasttext_confident": confident,
        "trust": trust,
    }


def domain_macro(rows: list[dict[str, Any]], predicted: Sequence[str | None]) -> float:
    """The mean over domains of each domain's macro accuracy: UDHR's 175 languages do not drown the UI strings."""
    domains = sorted({r["domain"] for r in rows})
    scores = []
    for domain in domains:
        chosen = [i for i, r in enumerate(rows) if r["domain"] == domain]
        scores.append(macro([rows[i] for i in chosen], [predicted[i] for i in chosen]))
    return sum(scores) / len(scores)


def gettext_set() -> list[dict[str, Any]]:
    """Translated UI strings from this machine's gettext catalogues, every other string in the tune half."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.langid_data import build_langid_set

    # the catalogues' Chinese is zh_CN: Simplified
    return [
        {"text": r["text"], "lang": "zh-Hans" if r["label"] == "zh" else r["label"], "split": ("tune", "test")[i % 2]}
        for i, r in enumerate(build_langid_set(per_language=40, seed=0))
    ]


def tune(out: Path) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    rows = [dict(r, domain="udhr", fold=(r["article"] // 2) % 2) for r in load_set(split="tune")]
    rows += [dict(r, domain="gettext", fold=(i // 2) % 2) for i, r in enumerate(gettext_set()) if r["split"] == "tune"]
    seen = observations(LanguageIdentifier(), [r["text"] for r in rows])
    folds = [[i for i, r in enumerate(rows) if r["fold"] == part] for part in (0, 1)]
    fold_trust = []
    for part in (0, 1):
        other = folds[1 - part]
        fold_trust.append(trust_tables([rows[i] for i in other], [seen[i] for i in other]))
    best: tuple[float, tuple[float, float, float, float]] | None = None
    for setting in itertools.product(CLD2_WEIGHTS, GAMMAS, DEFAULT_TRUSTS, FASTTEXT_CONFIDENT):
        predicted: list[str | None] = [None] * len(rows)
        for part in (0, 1):
            r = rule(*setting, fold_trust[part])
            for i in folds[part]:
                predicted[i] = combine(seen[i][0], seen[i][1], seen[i][2], r)[0]
        score = domain_macro(rows, predicted)
        if best is None or score > best[0]:
            best = (score, setting)
    assert best is not None
    weight, gamma, default, confident = best[1]
    chosen = rule(weight, gamma, default, confident, trust_tables(rows, seen))
    features, right = [], []
    cld_features, cld_right = [], []
    for row, (ft, reliable, cld) in zip(rows, seen):
        label, x = combine(ft, reliable, cld, chosen)
        if label is not None:
            features.append(x)
            right.append(int(is_right(label, row["lang"])))
        if cld:
            cld_features.append(cld2_features(reliable, cld))
            cld_right.append(int(is_right(cld[0][0], row["lang"])))

    def fit(x: list[list[float]], y: list[int]) -> list[float]:
        model = LogisticRegression(C=10.0, max_iter=1000).fit(x, y)
        return [round(float(model.intercept_[0]), 6), *(round(float(b), 6) for b in model.coef_[0])]

    chosen["calibration"] = fit(features, right)
    chosen["trust"] = {m: {c: round(t, 4) for c, t in sorted(table.items())} for m, table in chosen["trust"].items()}
    params = {
        "about": "written by `python -m bench.langid_eval tune` from the tune halves of tests/data/udhr_lid.jsonl.gz and of the gettext UI strings",
        "tune_mean_domain_macro_accuracy_cross_fitted": round(best[0], 4),
        "ensemble": chosen,
        "cld2": {"calibration": fit(cld_features, cld_right)},
    }
    out.write_text(json.dumps(params, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"chosen: cld2 weight {weight}, gamma {gamma}, default trust {default}, fastText confident at {confident}; "
          f"cross-fitted mean of the two domains' tune macro accuracy {best[0]:.4f} -> {out}", file=sys.stderr)
    return params


def expected_calibration_error(scores: list[float], right: list[bool], bins: int = 10) -> float:
    total, error = len(scores), 0.0
    for b in range(bins):
        members = [i for i, s in enumerate(scores) if b / bins <= s < (b + 1) / bins or (b == bins - 1 and s == 1.0)]
        if members:
            confidence = sum(scores[i] for i in members) / len(members)
            accuracy = sum(right[i] for i in members) / len(members)
            error += len(members) / total * abs(confidence - accuracy)
    return error


def evaluate(per_language_out: Path | None, repeats: int = 3) -> dict[str, Any]:
    rows = load_set(split="test")
    texts = [r["text"] for r in rows]
    known = {r["lang"]: set(r["known_by"]) for r in rows}
    groups = {
        "all": None,
        "both models know": {lang for lang, by in known.items() if by == {"fasttext", "cld2"}},
        "lid.176 knows": {lang for lang, by in known.items() if "fasttext" in by},
    }
    report: dict[str, Any] = {"strings": len(rows), "languages": len(known), "models": {}}
    predictions = {}
    for name in ("fasttext", "cld2", "ensemble"):
        identifier = make_identifier(name)
        identifier.predict(texts[:200])  # warm: model load, caches
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            predicted = identifier.predict(texts)
            best = min(best, time.perf_counter() - start)
        labels = [label for label, _ in predicted]
        predictions[name] = labels
        right = [is_right(label, r["lang"]) for label, r in zip(labels, rows)]
        report["models"][name] = {
            "strings_per_s": round(len(texts) / best),
            "micro_accuracy": round(sum(right) / len(right), 4),
            **{f"macro_accuracy ({g}, {len(langs) if langs else len(known)} languages)": round(macro(rows, labels, langs), 4)
               for g, langs in groups.items()},
            "ece": round(expected_calibration_error([s for _, s in predicted], right), 4),
        }
    report["second_domain"] = gettext_check()
    tables = {name: per_language(rows, labels) for name, labels in predictions.items()}
    worse = {lang: (tables["fasttext"][lang], tables["ensemble"][lang]) for lang in tables["ensemble"]
             if tables["ensemble"][lang] < tables["fasttext"][lang]}
    report["languages_worse_than_fasttext"] = {k: [round(a, 3), round(b, 3)] for k, (a, b) in sorted(worse.items())}
    if per_language_out is not None:
        lines = ["# Language ID per language (test half of tests/data/udhr_lid.jsonl.gz)", "",
                 "Written by `python -m bench.langid_eval eval`. Accuracy on short UDHR strings; "
                 "`known by` says which model can output the language.", "",
                 "| language | strings | known by | fasttext | cld2 | ensemble | Δ vs fasttext |", "|---|---|---|---|---|---|---|"]
        counts: dict[str, int] = defaultdict(int)
        for r in rows:
            counts[r["lang"]] += 1
        for lang in sorted(tables["ensemble"]):
            f, c, e = (tables[m][lang] for m in ("fasttext", "cld2", "ensemble"))
            by = "+".join(sorted(known[lang], key=["fasttext", "cld2"].index))
            lines.append(f"| {lang} | {counts[lang]} | {by} | {f:.3f} | {c:.3f} | {e:.3f} | {e - f:+.3f} |")
        per_language_out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report


def gettext_check() -> dict[str, Any]:
    """Macro accuracy on the test half of the second domain, translated UI strings (tests/langid_data.py)."""
    rows = [r for r in gettext_set() if r["split"] == "test"]
    if not rows:
        return {"skipped": "no gettext catalogues under /usr/share/locale"}
    out: dict[str, Any] = {"set": "gettext catalogues under /usr/share/locale, test half", "strings": len(rows),
                           "languages": len({r["lang"] for r in rows})}
    for name in ("fasttext", "cld2", "ensemble"):
        labels = [label for label, _ in make_identifier(name).predict([r["text"] for r in rows])]
        out[f"{name} macro_accuracy"] = round(macro(rows, labels), 4)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("tune")
    t.add_argument("--out", type=Path, default=PARAMS_FILE)
    e = sub.add_parser("eval")
    e.add_argument("--per-language", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "tune":
        tune(args.out)
    else:
        print(json.dumps(evaluate(args.per_language), indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
