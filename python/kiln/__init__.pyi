# Type stubs of the `kiln` package (kept in step with kiln/__init__.py).
import os
from typing import Iterable, Literal, NamedTuple, Optional, Union, overload

import numpy as np
import numpy.typing as npt

__version__: str

Precision = Literal["float32", "int8", "uint8", "binary", "ubinary"]

class KilnError(RuntimeError, ValueError):
    """An error reported by kiln, with kiln's message."""

def model_names() -> list[str]:
    """Short model names kiln can pull (e.g. ``embeddinggemma``, ``minilm``)."""

def cached_model(name: str) -> Optional[str]:
    """The GGUF of short name ``name`` if it is already in kiln's cache (never downloads)."""

def quantize_embeddings(
    embeddings: npt.ArrayLike,
    precision: Precision,
    ranges: Optional[npt.ArrayLike] = None,
    calibration_embeddings: Optional[npt.ArrayLike] = None,
) -> np.ndarray:
    """Quantizes float embeddings by sentence-transformers' rules."""

class Chunk(NamedTuple):
    """One chunk of a document: ``text[start:end]``, its tokens and vector."""

    start: int
    end: int
    tokens: tuple[int, int]
    embedding: np.ndarray

class Embedder:
    """A text-embedding model; safe to share between threads."""

    def __init__(
        self, model: Union[str, os.PathLike[str]], threads: Optional[int] = None, *, truncate: bool = True
    ) -> None: ...
    @property
    def dimension(self) -> int: ...
    def get_sentence_embedding_dimension(self) -> int: ...
    @property
    def max_seq_length(self) -> int: ...
    @property
    def prompts(self) -> dict[str, str]: ...
    @property
    def threads(self) -> int: ...
    @property
    def arch(self) -> str: ...
    @property
    def pooling(self) -> str: ...
    @property
    def model_path(self) -> str: ...
    @overload
    def encode(
        self,
        sentences: str,
        batch_size: int = 32,
        *,
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        truncate_dim: Optional[int] = None,
        normalize_embeddings: bool = True,
        precision: Precision = "float32",
        convert_to_numpy: Literal[True] = True,
        show_progress_bar: Optional[bool] = None,
    ) -> np.ndarray: ...
    @overload
    def encode(
        self,
        sentences: Iterable[str],
        batch_size: int = 32,
        *,
        prompt_name: Optional[str] = None,
        prompt: Optional[str] = None,
        truncate_dim: Optional[int] = None,
        normalize_embeddings: bool = True,
        precision: Precision = "float32",
        convert_to_numpy: Literal[True] = True,
        show_progress_bar: Optional[bool] = None,
    ) -> np.ndarray: ...
    @overload
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
        convert_to_numpy: Literal[False],
        show_progress_bar: Optional[bool] = None,
    ) -> list[np.ndarray]: ...
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
    ) -> list[Chunk]: ...
    def tokenize(self, text: str, *, prompt_name: Optional[str] = None, prompt: Optional[str] = None) -> list[int]: ...
    def similarity(self, a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray: ...
