"""The GIL is released while kiln computes, and one Embedder serves several
Python threads correctly."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

import kiln
from conftest import MINILM_GGUF, goldens

WORK = ["The quick brown fox jumps over the lazy dog while the cat watches from the window. " * 4] * 40


def test_python_runs_while_kiln_computes():
    """While two threads embed on one Embedder, the main thread running pure
    Python keeps running: the GIL is free during the native calls. Were it
    held, the main thread would stall for a whole call (seconds)."""
    e = kiln.Embedder(str(MINILM_GGUF), threads=1)
    e.encode(WORK[:2])  # warm up
    calls: list[float] = []

    def embed() -> None:
        t0 = time.perf_counter()
        e.encode(WORK, batch_size=len(WORK))  # one native call
        calls.append(time.perf_counter() - t0)

    workers = [threading.Thread(target=embed) for _ in range(2)]
    for w in workers:
        w.start()
    ticks, longest_stall = 0, 0.0
    last = time.perf_counter()
    while any(w.is_alive() for w in workers):
        now = time.perf_counter()
        longest_stall = max(longest_stall, now - last)
        last = now
        ticks += 1
    for w in workers:
        w.join()
    print(
        f"native calls {min(calls):.2f}-{max(calls):.2f} s; the Python thread ticked {ticks} times, "
        f"longest stall {longest_stall * 1e3:.0f} ms"
    )
    assert len(calls) == 2
    assert longest_stall < 0.25 * min(calls), (longest_stall, calls)


def timed(embedder: kiln.Embedder, n_threads: int) -> float:
    barrier = threading.Barrier(n_threads)

    def run() -> None:
        barrier.wait()
        embedder.encode(WORK)

    threads = [threading.Thread(target=run) for _ in range(n_threads)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def test_two_threads_take_well_under_twice_one():
    """Two Python threads on one Embedder (one kiln thread per call, so each
    runs on its caller's thread) against one thread doing the same work.

    The ratio is printed always, and asserted below 1.8 only when the
    machine has two cores to give (KILN_STRICT_TIMING=1): on a machine busy
    with other work it measures the machine, not the GIL (two separate
    processes show the same ~2x there). test_python_runs_while_kiln_computes
    checks the GIL itself, whatever the load.
    """
    e = kiln.Embedder(str(MINILM_GGUF), threads=1)
    e.encode(WORK[:2])  # warm up
    ratios = []
    for _ in range(3):
        one = timed(e, 1)
        two = timed(e, 2)
        ratios.append(two / one)
        print(f"one thread {one:.3f} s, two threads {two:.3f} s: ratio {two / one:.2f}")
        if two / one < 1.5:
            break
    if os.environ.get("KILN_STRICT_TIMING") == "1":
        assert min(ratios) < 1.8, ratios


def test_shared_embedder_gives_the_same_vectors_from_many_threads(minilm):
    texts = [r["text"] for r in goldens("all-MiniLM-L6-v2.st.jsonl")]
    want = minilm.encode(texts)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(minilm.encode, texts[i::4], batch_size=2) for i in range(4)]
        parts = [f.result() for f in futures]
    for i, part in enumerate(parts):
        np.testing.assert_allclose(part, want[i::4], atol=1e-6)
