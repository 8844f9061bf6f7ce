"""`precision=` and `quantize_embeddings` follow sentence-transformers' rules:
uint8 = (x - min) / ((max - min) / 255), int8 = that - 128, ubinary =
np.packbits(x > 0), binary = ubinary - 128 (as int8)."""

from __future__ import annotations

import numpy as np
import pytest

import kiln

TEXTS = [
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France.",
    "A tortoise is a reptile.",
    "¿Dónde está la biblioteca?",
    "東京は日本の首都です。",
]


def test_hand_computed_codes():
    # Columns whose ranges make the steps exact: min 0, max 255 -> step 1.
    emb = np.array([[0.0, 255.0, 10.5], [255.0, 0.0, 200.9], [100.0, 128.0, 255.0], [3.0, 4.0, 0.0]], np.float32)
    u8 = kiln.quantize_embeddings(emb, "uint8")
    assert u8.dtype == np.uint8
    assert u8.tolist() == [[0, 255, 10], [255, 0, 200], [100, 128, 255], [3, 4, 0]]
    i8 = kiln.quantize_embeddings(emb, "int8")
    assert i8.dtype == np.int8
    assert i8.tolist() == [[-128, 127, -117], [127, -128, 72], [-28, 0, 127], [-125, -124, -128]]
    # Given ranges: [-1, 1] in steps of 2/255; values outside saturate.
    ranges = np.array([[-1.0] * 3, [1.0] * 3], np.float32)
    x = np.array([[-1.0, 0.0, 5.0]], np.float32)
    assert kiln.quantize_embeddings(x, "uint8", ranges=ranges).tolist() == [[0, 127, 255]]
    # Calibration embeddings give the ranges instead of the input.
    calib = np.array([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]], np.float32)
    assert kiln.quantize_embeddings(x, "uint8", calibration_embeddings=calib).tolist() == [[0, 127, 255]]


def test_hand_computed_bits():
    signs = [1, -1, 1, -1, -1, -1, -1, 1, 0, 0, 0, 0, 0, 0, 0, 0.5]
    emb = np.array([signs, [-s for s in signs]], np.float32)
    ub = kiln.quantize_embeddings(emb, "ubinary")
    assert ub.dtype == np.uint8
    # 0b10100001 = 161 and 0b00000001 = 1 (zero is not > 0); the negated row.
    assert ub.tolist() == [[161, 1], [0b01011110, 0]]
    b = kiln.quantize_embeddings(emb, "binary")
    assert b.dtype == np.int8
    assert b.tolist() == [[33, -127], [94 - 128, -128]]


def sentence_transformers_rules(emb: np.ndarray, precision: str) -> np.ndarray:
    """sentence-transformers' quantize_embeddings without calibration, for
    inputs where its result is defined (no constant column, width % 8 == 0)."""
    if precision.endswith("int8"):
        ranges = np.vstack((np.min(emb, axis=0), np.max(emb, axis=0)))
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        if precision == "uint8":
            return ((emb - starts) / steps).astype(np.uint8)
        return ((emb - starts) / steps - 128).astype(np.int8)
    packed = np.packbits(emb > 0).reshape(emb.shape[0], -1)
    if precision == "ubinary":
        return packed
    return (packed - 128).astype(np.int8)


@pytest.mark.parametrize(
    "precision,dtype,width",
    [("uint8", np.uint8, 384), ("int8", np.int8, 384), ("ubinary", np.uint8, 48), ("binary", np.int8, 48)],
)
def test_encode_precision(minilm, precision, dtype, width):
    floats = minilm.encode(TEXTS)
    got = minilm.encode(TEXTS, precision=precision)
    assert got.dtype == dtype and got.shape == (len(TEXTS), width)
    np.testing.assert_array_equal(got, sentence_transformers_rules(floats, precision))
    if precision == "ubinary":
        np.testing.assert_array_equal(np.unpackbits(got, axis=1).astype(bool), floats > 0)
    if precision == "uint8":
        # Every dimension spans its codes: the row holding the minimum is 0.
        assert (got.min(axis=0) == 0).all()
        assert (got.max(axis=0) >= 254).all()


def test_precision_with_truncate_dim_and_single_text(minilm):
    assert minilm.encode(TEXTS, precision="ubinary", truncate_dim=128).shape == (len(TEXTS), 16)
    one = minilm.encode("Hello world", precision="binary")
    assert one.shape == (48,) and one.dtype == np.int8
    np.testing.assert_array_equal(one, minilm.encode(["Hello world"], precision="binary")[0])
    # One vector has no spread to calibrate on: every code is the lowest.
    assert (minilm.encode("Hello world", precision="uint8") == 0).all()
    assert minilm.encode("Hello world", precision="float32").dtype == np.float32


def test_bad_precision():
    with pytest.raises(ValueError, match="precision"):
        kiln.quantize_embeddings(np.zeros((2, 8), np.float32), "float16")
    with pytest.raises(ValueError, match="floats"):
        kiln.quantize_embeddings(np.zeros((2, 8), np.int8), "int8")
    with pytest.raises(ValueError, match="ranges"):
        kiln.quantize_embeddings(np.zeros((2, 8), np.float32), "int8", ranges=np.zeros((2, 4)))
