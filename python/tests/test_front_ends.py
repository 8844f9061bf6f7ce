"""The Python package finishes vectors through the same library path as the
`kiln` command line (tests/front_ends.rs compares the library, the CLI, the
server and `#[kiln::model]`): the same options give the same bits."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest

from conftest import MINILM_GGUF
from test_encode import kiln_cli

LONG = " ".join(f"w{i}" for i in range(400))
TEXTS = ["The quick brown fox jumps over the lazy dog.", "kiln serves embeddings", LONG]


def cli(texts: list[str], *args: str) -> list[list]:
    out = subprocess.run(
        [kiln_cli(), "embed", "-m", str(MINILM_GGUF), "-t", "2", "--truncate", "--format", "jsonl", *args, "--", *texts],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [json.loads(line)["embedding"] for line in out.splitlines() if line.strip()]


def assert_same_bits(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert got.dtype == want.dtype == np.float32
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize(
    "dim,normalize",
    [(None, True), (128, True), (100, False), (None, False)],
)
def test_bits_equal_the_cli(minilm, dim, normalize):
    assert len(minilm.tokenize(LONG)) > minilm.max_seq_length
    args = []
    if dim is not None:
        args += ["--dim", str(dim)]
    if not normalize:
        args.append("--no-normalize")
    want = np.array(cli(TEXTS, *args), dtype=np.float32)
    got = minilm.encode(TEXTS, truncate_dim=dim, normalize_embeddings=normalize)
    assert_same_bits(got, want)
    # One text at a time takes the library's single-text path: same bits.
    for i, text in enumerate(TEXTS):
        assert_same_bits(minilm.encode(text, truncate_dim=dim, normalize_embeddings=normalize), want[i])


def test_prompt_bits_equal_the_cli(minilm):
    want = np.array(cli(TEXTS, "--prompt", "query: "), dtype=np.float32)
    assert_same_bits(minilm.encode(TEXTS, prompt="query: "), want)


@pytest.mark.parametrize("precision,dtype", [("ubinary", np.uint8), ("binary", np.int8)])
def test_sign_bit_precisions_equal_the_cli(minilm, precision, dtype):
    # The packed sign bits need no range, so they are the same in both.
    want = np.array(cli(TEXTS, "--dim", "256", "--precision", precision), dtype=dtype)
    got = minilm.encode(TEXTS, truncate_dim=256, precision=precision)
    np.testing.assert_array_equal(got, want)
