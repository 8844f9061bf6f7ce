"""Embed a text corpus with kiln on Ray Data and write the vectors to Parquet.

    pip install ./python "ray[data]"
    python examples/ray_embed.py --rows 4000 --out /tmp/kiln-ray

The script makes a corpus (``--rows`` lines of Parquet with ``id`` and
``text``; or give your own with ``--input`` (Parquet or JSONL with a ``text``
column), starts a local Ray cluster on loopback (or joins the one
``--address`` / ``RAY_ADDRESS`` names) and runs ``map_batches`` with a
callable class that holds one ``kiln.Embedder`` per actor. Actors times
threads per actor equals the cores Ray has: kiln parallelizes inside a
batch, so one actor per node (or per N cores) beats one per core.

The same code runs unchanged on a multi-node cluster: each actor opens the
model by short name, which resolves in ``$KILN_HOME`` on its node and is
pulled there on first use (once per node; actors on the same node wait for
each other's pull).

``--check`` also embeds the corpus in this process with one
``kiln.Embedder`` and checks the Ray output row by row (one vector per
input row, in order, equal to the single-process result); ``--cli`` times
``kiln embed`` on the same corpus for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

import kiln

WORDS = (
    "the a kiln model embeds text on cpus with quantized weights fast small vectors search query document "
    "paris france capital river city tortoise reptile slow garden rain cloud sun mountain valley music "
    "engine rust python thread batch token attention layer matrix cosine similarity cluster node actor"
).split()


def make_corpus(path: Path, rows: int, seed: int = 0) -> None:
    """`rows` short synthetic sentences (5 to 60 words), deterministic."""
    rng = random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))).capitalize() + "." for _ in range(rows)]
    pq.write_table(pa.table({"id": pa.array(range(rows), pa.int64()), "text": texts}), path)


class KilnEmbed:
    """One kiln.Embedder per Ray actor; called on Arrow batches."""

    def __init__(self, model: str, threads: int, prompt_name: str | None = None) -> None:
        # Actors on one node may race to pull a short-named model into the
        # node's cache on first use: one pulls, the others wait and retry.
        for attempt in range(600):
            try:
                self.embedder = kiln.Embedder(model, threads=threads)
                break
            except kiln.KilnError as e:
                if "is running" not in str(e) or attempt == 599:
                    raise
                time.sleep(1)
        self.prompt_name = prompt_name

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column("text").to_pylist()
        vectors = self.embedder.encode(texts, batch_size=len(texts) or 1, prompt_name=self.prompt_name)
        dim = vectors.shape[1]
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
        return pa.table({"id": batch.column("id"), "embedding": embedding})


def read_input(path: str) -> ray.data.Dataset:
    # Reading and writing are light next to embedding: they reserve no CPU,
    # so the kiln actors can hold all of them (actors x threads = cores)
    # without starving the reads that feed them.
    if path.endswith((".jsonl", ".json")):
        ds = ray.data.read_json(path, num_cpus=0)
    else:
        ds = ray.data.read_parquet(path, num_cpus=0)
    if "id" not in ds.schema().names:
        raise SystemExit(f"{path}: needs an `id` column next to `text` (to keep rows in order)")
    return ds


def load_texts(path: str) -> tuple[list[int], list[str]]:
    """ids and texts of the corpus, in id order, read in this process."""
    if path.endswith((".jsonl", ".json")):
        with open(path, encoding="utf-8") as f:
            rows = sorted((json.loads(line) for line in f if line.strip()), key=lambda r: r["id"])
        return [r["id"] for r in rows], [r["text"] for r in rows]
    table = pq.read_table(path, columns=["id", "text"]).sort_by("id")
    return table.column("id").to_pylist(), table.column("text").to_pylist()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="minilm", help="short name or GGUF path (default: minilm)")
    ap.add_argument("--input", help="Parquet or JSONL with `id` and `text` (default: a generated corpus)")
    ap.add_argument("--rows", type=int, default=4000, help="rows of the generated corpus")
    ap.add_argument("--out", default=None, help="output directory (default: a temporary one)")
    ap.add_argument("--threads", type=int, default=None, help="kiln threads per actor (default: all of a node's cores)")
    ap.add_argument("--actors", type=int, default=None, help="actors (default: cluster cores / threads)")
    ap.add_argument("--batch-size", type=int, default=256, help="rows per map_batches call")
    ap.add_argument("--prompt-name", default=None, help="a task prompt of the model (EmbeddingGemma: query, document, ...)")
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS"), help="an existing Ray cluster")
    ap.add_argument("--check", action="store_true", help="compare with a single-process kiln.Embedder")
    ap.add_argument("--cli", default=None, help="a `kiln` binary to time `kiln embed` on the same corpus")
    args = ap.parse_args()

    out = Path(args.out or tempfile.mkdtemp(prefix="kiln-ray-"))
    out.mkdir(parents=True, exist_ok=True)
    corpus = args.input
    if corpus is None:
        corpus = str(out / "corpus.parquet")
        make_corpus(Path(corpus), args.rows)

    if args.address:
        ray.init(address=args.address)
        cores = int(ray.cluster_resources().get("CPU", 1))
    else:
        # A local cluster on loopback only, no dashboard. One logical CPU
        # more than the machine has: Ray Data's file-listing task reserves a
        # CPU, and the kiln actors hold every real core (it does no work
        # while they embed).
        cores = os.cpu_count() or 1
        ray.init(num_cpus=cores + 1, _node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=False)
    threads = args.threads or min(cores, os.cpu_count() or 1)
    actors = args.actors or max(1, cores // threads)
    print(f"Ray: {cores} cores; {actors} actor(s) x {threads} kiln thread(s)")

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ds = read_input(corpus)
    vectors_dir = out / "vectors"
    start = time.perf_counter()
    (
        ds.map_batches(
            KilnEmbed,
            fn_constructor_kwargs={"model": args.model, "threads": threads, "prompt_name": args.prompt_name},
            batch_size=args.batch_size,
            batch_format="pyarrow",
            concurrency=actors,
            num_cpus=threads,
        ).write_parquet(str(vectors_dir), ray_remote_args={"num_cpus": 0})
    )
    ray_secs = time.perf_counter() - start
    result = pq.read_table(vectors_dir).sort_by("id")
    n = result.num_rows
    print(f"Ray Data: {n} vectors in {ray_secs:.2f} s ({n / ray_secs:.1f} texts/s) -> {vectors_dir}")

    status = 0
    if args.check:
        ids, text_list = load_texts(corpus)
        start = time.perf_counter()
        want = kiln.Embedder(args.model, threads=cores).encode(text_list, batch_size=256, prompt_name=args.prompt_name)
        local_secs = time.perf_counter() - start
        got = np.asarray(result.column("embedding").combine_chunks().flatten(), np.float32).reshape(n, -1)
        ok = n == len(text_list) and result.column("id").to_pylist() == ids
        cos = float(np.min(np.sum(got * want, axis=1))) if ok else float("nan")
        ok = ok and cos >= 0.99999
        print(
            f"single process: {len(text_list)} vectors in {local_secs:.2f} s ({len(text_list) / local_secs:.1f} texts/s); "
            f"rows {'match' if ok else 'DIFFER'} (min cosine {cos:.7f})"
        )
        status = 0 if ok else 1
    if args.cli:
        text_file = out / "corpus.txt"
        _, text_list = load_texts(corpus)
        text_file.write_text("".join(t.replace("\n", " ") + "\n" for t in text_list), encoding="utf-8")
        start = time.perf_counter()
        subprocess.run(
            [args.cli, "embed", "-m", args.model, "--truncate", "--input", str(text_file), "-o", os.devnull],
            check=True,
        )
        cli_secs = time.perf_counter() - start
        print(f"kiln embed: {n} vectors in {cli_secs:.2f} s ({n / cli_secs:.1f} texts/s)")
    ray.shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
