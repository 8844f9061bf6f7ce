"""`Embedder.encode` against the references, and its call shape."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import kiln
from conftest import MINILM_GGUF, ROOT, cached_model_or_skip, cosine, goldens


def test_minilm_matches_sentence_transformers(minilm):
    """The bar of the Rust end-to-end tests: MiniLM Q8_0 against float32
    sentence-transformers, cosine >= 0.9985 each and >= 0.9995 on average."""
    rows = goldens("all-MiniLM-L6-v2.st.jsonl")
    got = minilm.encode([r["text"] for r in rows])
    assert got.shape == (len(rows), 384)
    assert got.dtype == np.float32
    sims = [cosine(g, r["embedding"]) for g, r in zip(got, rows)]
    print(f"MiniLM vs sentence-transformers: min {min(sims):.6f}, mean {np.mean(sims):.6f}")
    assert min(sims) >= 0.9985, [(round(s, 6), r["text"][:40]) for s, r in zip(sims, rows) if s < 0.9985]
    assert np.mean(sims) >= 0.9995


def test_tokens_match_goldens(minilm):
    for r in goldens("all-MiniLM-L6-v2.st.jsonl"):
        assert minilm.tokenize(r["text"]) == r["token_ids"], r["text"][:40]


def kiln_cli() -> str:
    """The `kiln` binary: $KILN_BIN, else a release build in the repository
    (scripts/test-python builds it); skip when there is none."""
    exe = os.environ.get("KILN_BIN")
    if exe:
        return exe
    for candidate in (ROOT / "target" / "release" / "kiln", ROOT / "target" / "debug" / "kiln"):
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("kiln")
    if found:
        return found
    pytest.skip("no kiln binary (set KILN_BIN or run `cargo build --release`)")


def cli_embed(model: str, texts: list[str], *args: str) -> np.ndarray:
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "in.txt"
        inp.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        out = subprocess.run(
            [kiln_cli(), "embed", "-m", model, "--truncate", "--format", "jsonl", "--input", str(inp), *args],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert [r["text"] for r in rows] == texts
    return np.array([r["embedding"] for r in rows], dtype=np.float32)


def test_equals_the_cli(minilm):
    texts = [r["text"] for r in goldens("all-MiniLM-L6-v2.st.jsonl")]
    assert all("\n" not in t and "\r" not in t for t in texts)
    want = cli_embed(str(MINILM_GGUF), texts)
    got = minilm.encode(texts)
    sims = [cosine(g, w) for g, w in zip(got, want)]
    print(f"Python vs CLI: min cosine {min(sims):.8f}, max |diff| {np.abs(got - want).max():.2e}")
    assert min(sims) >= 0.99999


def test_gemma_equals_the_cli_with_task_and_dim(gemma):
    texts = [r["text"] for r in goldens("embeddinggemma-300m.st.jsonl")][:8]
    want = cli_embed(gemma.model_path, texts, "--task", "document", "--dim", "256")
    got = gemma.encode(texts, prompt_name="document", truncate_dim=256)
    assert got.shape == (8, 256)
    assert min(cosine(g, w) for g, w in zip(got, want)) >= 0.99999


def test_shapes_and_input_kinds(minilm):
    one = minilm.encode("Hello world")
    assert one.shape == (384,) and one.dtype == np.float32
    many = minilm.encode(["Hello world", "Bonjour le monde"])
    assert many.shape == (2, 384)
    np.testing.assert_allclose(many[0], one, atol=1e-6)
    assert minilm.encode([]).shape == (0, 384)
    # Tuples, generators and numpy string arrays (what Ray and pandas hand over).
    np.testing.assert_allclose(minilm.encode(("Hello world", "Bonjour le monde")), many, atol=1e-6)
    np.testing.assert_allclose(minilm.encode(t for t in ["Hello world", "Bonjour le monde"]), many, atol=1e-6)
    np.testing.assert_allclose(minilm.encode(np.array(["Hello world", "Bonjour le monde"])), many, atol=1e-6)
    as_list = minilm.encode(["Hello world", "Bonjour le monde"], convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == 2 and as_list[1].shape == (384,)
    assert np.linalg.norm(many, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    many.flags.writeable  # an ordinary, writable array
    many[0, 0] = 0.0


def test_batch_size_does_not_change_vectors(minilm):
    texts = [r["text"] for r in goldens("all-MiniLM-L6-v2.st.jsonl")][:10]
    a = minilm.encode(texts, batch_size=1)
    b = minilm.encode(texts, batch_size=3)
    c = minilm.encode(texts, batch_size=64)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(a, c, atol=1e-6)


def test_normalize_off_gives_the_raw_vector(minilm):
    raw = minilm.encode(["Hello world", "A tortoise is a reptile."], normalize_embeddings=False)
    norms = np.linalg.norm(raw, axis=1)
    assert np.all(np.abs(norms - 1.0) > 1e-3), norms
    unit = minilm.encode(["Hello world", "A tortoise is a reptile."])
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-6)


def test_truncate_dim_cuts_then_normalizes(minilm):
    text = ["The quick brown fox jumps over the lazy dog."]
    raw = minilm.encode(text, normalize_embeddings=False)[0]
    cut = minilm.encode(text, truncate_dim=128)[0]
    assert cut.shape == (128,)
    np.testing.assert_allclose(cut, raw[:128] / np.linalg.norm(raw[:128]), atol=1e-6)
    cut_raw = minilm.encode(text, truncate_dim=100, normalize_embeddings=False)[0]
    np.testing.assert_allclose(cut_raw, raw[:100], atol=1e-6)


def test_custom_prompt_is_prepended(minilm):
    a = minilm.encode("Paris is in France.", prompt="query: ")
    b = minilm.encode("query: Paris is in France.")
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert minilm.tokenize("Paris", prompt="query: ") == minilm.tokenize("query: Paris")
    assert minilm.prompts == {}


def test_gemma_prompts_and_matryoshka(gemma):
    """EmbeddingGemma with prompt_name query/document/none at 768/512/256/128
    against float32 sentence-transformers (the Rust API's bar: >= 0.999)."""
    assert gemma.prompts["query"] == "task: search result | query: "
    assert gemma.prompts["document"] == "title: none | text: "
    rows = goldens("embeddinggemma-300m.prompts.st.jsonl")
    worst = 1.0
    for r in rows:
        name = r["prompt_name"]
        assert gemma.tokenize(r["text"], prompt_name=name) == r["token_ids"], (name, r["text"][:40])
        got = gemma.encode(r["text"], prompt_name=name, truncate_dim=r["dim"])
        assert got.shape == (r["dim"],)
        s = cosine(got, r["embedding"])
        worst = min(worst, s)
        assert s >= 0.999, (name, r["dim"], r["text"][:40], s)
    print(f"EmbeddingGemma prompts x dims: {len(rows)} rows, min cosine {worst:.6f}")
    # A custom prompt equal to a named one gives the same vectors.
    a = gemma.encode(["Hello"], prompt_name="query")
    b = gemma.encode(["Hello"], prompt="task: search result | query: ")
    np.testing.assert_array_equal(a, b)
    # prompt wins over prompt_name, with a warning (as in sentence-transformers).
    with pytest.warns(UserWarning, match="ignoring prompt_name"):
        c = gemma.encode(["Hello"], prompt_name="document", prompt="task: search result | query: ")
    np.testing.assert_array_equal(a, c)


def test_model_facts(minilm):
    assert minilm.dimension == 384
    assert minilm.get_sentence_embedding_dimension() == 384
    assert minilm.max_seq_length == 512
    assert minilm.arch == "bert"
    assert minilm.pooling == "mean"
    assert minilm.threads == 2
    assert minilm.model_path == str(MINILM_GGUF)
    assert "dimension=384" in repr(minilm)
    assert "minilm" in kiln.model_names() and "embeddinggemma" in kiln.model_names()
    sim = minilm.similarity(minilm.encode(["a cat", "a kitten"]), minilm.encode(["a cat"]))
    assert sim.shape == (2, 1) and sim[0, 0] == pytest.approx(1.0, abs=1e-5) and sim[1, 0] < 0.99


def test_short_names_resolve_like_the_cli():
    path = cached_model_or_skip("minilm")
    e = kiln.Embedder("minilm", threads=1)
    assert e.model_path == path
    assert e.encode("Hello world").shape == (384,)
