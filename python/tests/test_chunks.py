"""Chunked embedding of long documents (`Embedder.embed_chunks`): the same
chunks and vectors as `kiln embed --chunk`, naive chunks as `encode` embeds
their text, late chunks past the context, and clear errors."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import kiln

from conftest import MINILM_GGUF, cosine
from test_encode import kiln_cli

SENTENCES = [
    "The kiln fires clay at high temperature.",
    "Late chunking pools each chunk from token states that saw the whole document.",
    "Naive chunking embeds every chunk on its own, without the rest of the text.",
    "Retrieval systems index chunks, not whole books.",
]
# About 1,500 MiniLM tokens: three times its 512-token context.
DOC = " ".join(SENTENCES[i % 4] + f" Paragraph {i}." for i in range(90))


def cli_chunks(mode: str, size: int, overlap: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        inp = Path(tmp) / "doc.txt"
        inp.write_text(DOC, encoding="utf-8")
        out = subprocess.run(
            [kiln_cli(), "embed", "-m", str(MINILM_GGUF), "--chunk", mode, "--chunk-size", str(size),
             "--chunk-overlap", str(overlap), "--input", str(inp)],
            check=True, capture_output=True, text=True,
        ).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize("mode", ["late", "naive"])
def test_chunks_equal_the_cli(minilm, mode):
    chunks = minilm.embed_chunks(DOC, max_tokens=128, overlap=16, mode=mode)
    want = cli_chunks(mode, 128, 16)
    assert len(chunks) == len(want) > 3
    for c, w in zip(chunks, want):
        assert (c.start, c.end, list(c.tokens)) == (w["start"], w["end"], w["tokens"])
        assert c.embedding.dtype == np.float32 and c.embedding.shape == (minilm.dimension,)
        np.testing.assert_array_equal(c.embedding, np.asarray(w["embedding"], dtype=np.float32))


def test_late_chunks_cover_a_document_past_the_context(minilm):
    chunks = minilm.embed_chunks(DOC)
    assert chunks[-1].tokens[1] > minilm.max_seq_length, "the document is longer than the context"
    assert chunks[0].start == 0 and chunks[-1].end == len(DOC)
    for a, b in zip(chunks, chunks[1:]):
        assert b.start < a.end and b.tokens[0] < a.tokens[1], "consecutive chunks overlap"
    for c in chunks:
        assert abs(float(np.linalg.norm(c.embedding)) - 1) < 1e-5
        assert c.tokens[1] - c.tokens[0] <= 256


def test_naive_chunks_are_their_text_embedded_alone(minilm):
    for c in minilm.embed_chunks(DOC, max_tokens=64, overlap=8, mode="naive"):
        assert cosine(c.embedding, minilm.encode(DOC[c.start : c.end])) > 0.9999, DOC[c.start : c.end][:40]


def test_late_and_naive_differ_and_spans_are_kept(minilm):
    spans = [(0, 40), (41, 120), (121, 300)]
    late = minilm.embed_chunks(DOC, spans=spans)
    naive = minilm.embed_chunks(DOC, spans=spans, mode="naive", truncate_dim=128)
    assert [(c.start, c.end) for c in late] == spans
    assert naive[0].embedding.shape == (128,)
    assert cosine(late[1].embedding, minilm.embed_chunks(DOC, spans=spans, mode="naive")[1].embedding) < 0.9999


def test_bad_chunk_options_are_refused(minilm):
    with pytest.raises(ValueError, match="mode"):
        minilm.embed_chunks(DOC, mode="eager")
    with pytest.raises(ValueError, match="boundary"):
        minilm.embed_chunks(DOC, boundary="page")
    with pytest.raises(kiln.KilnError):
        minilm.embed_chunks(DOC, spans=[(10, 5)])
    with pytest.raises(kiln.KilnError):
        minilm.embed_chunks(DOC, max_tokens=16, overlap=16)
    with pytest.raises(ValueError, match="max_tokens"):
        minilm.embed_chunks(DOC, max_tokens=-1)
