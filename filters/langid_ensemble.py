"""A second language-ID model (CLD2) and a calibrated fastText + CLD2 ensemble.

Why two models
--------------
lid.176 has blind spots that lose whole languages in a multilingual build: it confuses
ms/id, nb/nn/da, gl/es/pt, bs/hr/sr and cannot output some languages at all (Shona, Xhosa,
Zulu, Hawaiian, Kinyarwanda…). CLD2 (Chromium's compact language detector, ``pycld2``: its
tables are compiled into the wheel, nothing is loaded at run time) was built differently,
from different data, and is right on many of those.

The rule
--------
Each model proposes its top languages with a probability: fastText's softmax top 3, CLD2's
top 3 with the share of the text it gave each (``percent / 100``, best-effort mode so that
short strings get an answer). Every candidate language ``L`` scores

    s(L) = Σ_model  w_model · trust_model(L) ** gamma · p_model(L)

where ``trust_model(L)`` is how often that model was right when it said ``L`` on the tune
halves (the UDHR set ``tests/data/udhr_lid.jsonl.gz`` and the gettext UI strings; smoothed,
``default_trust`` for a label it never said there). The label is the best-scoring candidate,
except that fastText's top answer wins outright when its probability is at least
``fasttext_confident``: CLD2's "percent" is the share of the text it gave a language, not a
confidence (it says 98% Vietnamese for Kurmanji). The tuning may switch that override off
(a value above 1), and the shipped rule does: on the tune halves it cost more than it saved.
The weights, ``gamma``, ``fasttext_confident`` and the trust tables are chosen on the tune
halves by ``python -m bench.langid_eval tune`` (never on the halves the accuracy is reported
on) and stored in ``langid_ensemble.json`` beside this file.

The score
---------
``s(L)`` is not a probability. The score written to ``lang_score`` is a logistic
calibration, fitted on the tune halves, of the chance that the label is right, from the
best and second-best candidate scores, whether the two models' top answers agree, CLD2's
"reliable" flag and fastText's own top probability. ``cld2`` alone gets the same kind of
calibration of its top share and reliable flag. A score of 0.8 means "right about 80% of the
time" on short strings like the labelled set's: thresholds tuned for raw lid.176
probabilities (FineWeb's English > 0.65) do not transfer to it unchanged.

Codes
-----
Both models' labels go through :func:`filters.langtags.canonical`, so the two speak one code
system; Chinese gets its script from CLD2 (``zh-Hans``, ``zh-Hant``), Serbian from its letters.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filters.langid import DEFAULT_MAX_CHARS, LanguageIdentifier, normalize_for_langid
from filters.langtags import canonical, with_script

PARAMS_FILE = Path(__file__).with_name("langid_ensemble.json")
INSTALL_HINT = "install it with: pip install pycld2==0.42"
TOP_K = 3
Prediction = tuple[str | None, float]
Candidates = list[tuple[str, float]]

# Code points CLD2 refuses as "invalid UTF-8" although Python encodes them: C0/C1 controls,
# surrogates (already replaced by normalize_for_langid) and the noncharacters.
_CLD2_REFUSES = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufdd0-\ufdef\ufffe\uffff]")


class Cld2MissingError(ImportError):
    """``pycld2`` is not installed."""


def require_cld2() -> Any:
    """The ``pycld2`` module; :class:`Cld2MissingError`, naming the install command, without it."""
    try:
        import pycld2
    except ImportError as exc:
        raise Cld2MissingError(f"the CLD2 language-ID model needs the pycld2 package; {INSTALL_HINT}") from exc
    return pycld2


def cld2_candidates(line: str) -> tuple[bool, Candidates]:
    """(reliable, [(code, share of the text), …]) from CLD2's best-effort detection of one line."""
    if not line:
        return False, []
    pycld2 = require_cld2()
    try:
        reliable, _bytes, details = pycld2.detect(line, bestEffort=True)
    except pycld2.error:
        try:
            reliable, _bytes, details = pycld2.detect(_CLD2_REFUSES.sub(" ", line), bestEffort=True)
        except pycld2.error:
            return False, []
    out: Candidates = []
    for _name, code, percent, _score in details:
        if code == "un" or percent <= 0:
            continue
        out.append((with_script(canonical(code, "cld2"), line), percent / 100.0))
    return bool(reliable), out


def fasttext_candidates(identifier: LanguageIdentifier, lines: list[str]) -> list[Candidates]:
    """fastText's top-3 per normalized line, in the project's codes (two raw labels may share one)."""
    out = []
    for top in identifier._predict_normalized(lines, TOP_K):
        merged: dict[str, float] = {}
        for code, p in top:
            merged[code] = merged.get(code, 0.0) + p
        out.append(list(merged.items()))
    return out


def observations(
    fasttext: LanguageIdentifier, texts: Sequence[str], max_chars: int = DEFAULT_MAX_CHARS
) -> list[tuple[Candidates, bool, Candidates]]:
    """(fastText candidates, CLD2 reliable, CLD2 candidates) per text: what the rule reads."""
    lines = [normalize_for_langid(t, max_chars) for t in texts]
    return [(ft, *cld2_candidates(line)) for ft, line in zip(fasttext_candidates(fasttext, lines), lines)]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x > -60 else 0.0


@functools.lru_cache(maxsize=4)
def load_params(path: str | None = None) -> dict[str, Any]:
    """The tuned rule (weights, trust tables, calibrations) from ``langid_ensemble.json``."""
    return json.loads(Path(path or PARAMS_FILE).read_text(encoding="utf-8"))


def calibrated(coefficients: Sequence[float], features: Sequence[float]) -> float:
    """``sigmoid(b0 + Σ b_i x_i)``: coefficients[0] is the intercept."""
    return _sigmoid(coefficients[0] + sum(b * x for b, x in zip(coefficients[1:], features)))


def cld2_features(reliable: bool, cld: Candidates) -> list[float]:
    return [cld[0][1] if cld else 0.0, 1.0 if reliable else 0.0]


def resolve_chinese(ft: Candidates, cld: Candidates) -> Candidates:
    """fastText's script-less ``zh`` takes the script CLD2 saw (it tells Hans from Hant)."""
    script = next((code for code, _ in cld if code.startswith("zh-")), None)
    if script is None:
        return ft
    return [(script if code == "zh" else code, p) for code, p in ft]


def combine(
    ft: Candidates, reliable: bool, cld: Candidates, rule: dict[str, Any]
) -> tuple[str | None, list[float]]:
    """The ensemble's label and the calibration features, given both models' candidates."""
    ft = resolve_chinese(ft, cld)
    scores: dict[str, float] = {}
    gamma, default = rule["gamma"], rule["default_trust"]
    for model, candidates in (("fasttext", ft), ("cld2", cld)):
        weight, trust = rule["weights"][model], rule["trust"][model]
        for code, p in candidates:
            scores[code] = scores.get(code, 0.0) + weight * trust.get(code, default) ** gamma * p
    if not scores:
        return None, []
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    if ft and ft[0][1] >= rule["fasttext_confident"] and ranked[0][0] != ft[0][0]:
        ranked.remove((ft[0][0], scores[ft[0][0]]))
        ranked.insert(0, (ft[0][0], scores[ft[0][0]]))
    best = ranked[0][1]
    second = ranked[1][1] if len(ranked) > 1 else 0.0
    agree = 1.0 if ft and cld and ft[0][0] == cld[0][0] else 0.0
    features = [best, best - second, agree, 1.0 if reliable else 0.0, ft[0][1] if ft else 0.0]
    return ranked[0][0], features


class Cld2Identifier:
    """CLD2 alone: ``predict(texts) -> [(label | None, calibrated score), …]``."""

    def __init__(self, max_chars: int = DEFAULT_MAX_CHARS, params: str | None = None) -> None:
        if max_chars <= 0:
            raise ValueError("max_chars must be positive")
        require_cld2()  # fail here, with the install command, not inside a worker
        self.max_chars = max_chars
        self.params = params
        self.calibration = load_params(params)["cld2"]["calibration"]

    def __reduce__(self) -> tuple[Any, tuple[int, str | None]]:
        return (type(self), (self.max_chars, self.params))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        out: list[Prediction] = []
        for text in texts:
            reliable, cld = cld2_candidates(normalize_for_langid(text, self.max_chars))
            out.append((cld[0][0], calibrated(self.calibration, cld2_features(reliable, cld))) if cld else (None, 0.0))
        return out

    def predict_one(self, text: str) -> Prediction:
        return self.predict([text])[0]


class EnsembleIdentifier:
    """fastText lid.176 + CLD2 with the tuned rule: ``predict(texts) -> [(label | None, score), …]``."""

    def __init__(
        self, path: str | os.PathLike[str] | None = None, max_chars: int = DEFAULT_MAX_CHARS, params: str | None = None
    ) -> None:
        require_cld2()
        self.fasttext = LanguageIdentifier(path=path, max_chars=max_chars)
        self.max_chars = max_chars
        self.params = params
        self.rule = load_params(params)["ensemble"]

    def __reduce__(self) -> tuple[Any, tuple[str | None, int, str | None]]:
        return (type(self), (self.fasttext._path_arg, self.max_chars, self.params))

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        out: list[Prediction] = []
        for ft, reliable, cld in observations(self.fasttext, texts, self.max_chars):
            label, features = combine(ft, reliable, cld, self.rule)
            out.append((label, calibrated(self.rule["calibration"], features)) if label else (None, 0.0))
        return out

    def predict_one(self, text: str) -> Prediction:
        return self.predict([text])[0]
