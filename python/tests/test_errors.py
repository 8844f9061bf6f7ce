"""Errors surface as Python exceptions carrying kiln's message."""

from __future__ import annotations

import numpy as np
import pytest

import kiln
from conftest import MINILM_GGUF


def test_kiln_error_is_runtime_and_value_error():
    assert issubclass(kiln.KilnError, RuntimeError)
    assert issubclass(kiln.KilnError, ValueError)


def test_unknown_model():
    with pytest.raises(kiln.KilnError, match="unknown model .*not-a-model.*known: .*minilm"):
        kiln.Embedder("not-a-model")


def test_corrupt_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 60)
    with pytest.raises(kiln.KilnError) as e:
        kiln.Embedder(str(bad))
    assert str(bad) in str(e.value)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(MINILM_GGUF.read_bytes()[:100_000])
    with pytest.raises(kiln.KilnError):
        kiln.Embedder(str(truncated))


def test_too_long_without_truncation():
    e = kiln.Embedder(str(MINILM_GGUF), threads=1, truncate=False)
    long = "word " * 600
    with pytest.raises(kiln.KilnError, match="more than the model's context of 512"):
        e.encode(["short", long])
    # The embedder is still usable afterwards.
    assert e.encode("short").shape == (384,)
    # With truncation (the default) the same text embeds.
    assert kiln.Embedder(str(MINILM_GGUF), threads=1).encode(long).shape == (384,)


def test_bad_arguments(minilm):
    with pytest.raises(TypeError):
        minilm.encode(123)
    with pytest.raises(TypeError, match=r"sentences\[1\]"):
        minilm.encode(["ok", 2])
    with pytest.raises(TypeError, match="bytes"):
        minilm.encode(b"bytes")
    with pytest.raises(ValueError, match="batch_size"):
        minilm.encode(["a"], batch_size=0)
    with pytest.raises(ValueError, match="truncate_dim 0"):
        minilm.encode(["a"], truncate_dim=0)
    with pytest.raises(ValueError, match="truncate_dim 385 is not between 1 and the model's 384"):
        minilm.encode(["a"], truncate_dim=385)
    with pytest.raises(ValueError, match="precision"):
        minilm.encode(["a"], precision="float16")
    with pytest.raises(ValueError, match="prompt name 'query'.*known: none"):
        minilm.encode(["a"], prompt_name="query")
    with pytest.raises(TypeError):
        minilm.tokenize(["a list"])
    with pytest.raises(UnicodeEncodeError):
        minilm.encode(["lone surrogate \ud800"])
    with pytest.raises(ValueError, match="threads"):
        kiln.Embedder(str(MINILM_GGUF), threads=0)
    with pytest.raises(TypeError, match="threads"):
        kiln.Embedder(str(MINILM_GGUF), threads="2")
    # Nothing above broke the model.
    assert np.isfinite(minilm.encode("still fine")).all()
