"""Shared fixtures: the repository's MiniLM GGUF, goldens, cached models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

import kiln

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
MINILM_GGUF = FIXTURES / "all-MiniLM-L6-v2-Q8_0.gguf"
GOLDENS = FIXTURES / "goldens"


def goldens(name: str) -> list[dict]:
    """Rows of a golden JSONL file in tests/fixtures/goldens."""
    with open(GOLDENS / name, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def cached_model_or_skip(name: str) -> str:
    """A model of kiln's cache, else skip (fail under KILN_REQUIRE_MODELS=1,
    as the Rust tests do)."""
    path = kiln.cached_model(name)
    if path is None:
        message = f"model `{name}` is not in the cache (run `kiln pull {name}`)"
        if os.environ.get("KILN_REQUIRE_MODELS") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def minilm() -> kiln.Embedder:
    return kiln.Embedder(str(MINILM_GGUF), threads=2)


@pytest.fixture(scope="session")
def gemma() -> kiln.Embedder:
    return kiln.Embedder(cached_model_or_skip("embeddinggemma"), threads=2)
