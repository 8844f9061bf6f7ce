"""Rooflines, the README table and the SVG chart of `scripts/bench-vs-llamacpp` runs.

Used by the harness after a run and by `scripts/bench-vs-llamacpp --from-json PATH`
on a results JSON. Everything here derives from numbers the JSON records
(floors, rows) and from the model's GGUF shapes (read here, not by kiln):
no measurement happens in this module.

A row's roofline is the tighter of two floors, in the row's own unit
(s for latency rows, texts/s or tokens/s for throughput rows):

- memory: the bytes of weights one forward pass (or decode step) reads,
  divided by the read bandwidth measured with the row's threads;
- compute: the row's multiply-adds, as 2 int8 ops each, divided by the int8
  ceiling (GOPS per thread, 2 ops per multiply-add) times the row's threads.

"Tighter" is the larger time (the smaller throughput). Fractions of the
roofline are 1.0 at the roofline and smaller further from it: roofline /
measured for latencies, measured / roofline for throughputs.
"""

import json
import os
import struct
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GOLDENS = ROOT / "tests" / "fixtures" / "goldens"
SENTENCES = GOLDENS / "sentences.txt"
# Model short name -> (sentence-transformers goldens with kiln's token ids, context the harness cuts to).
GOLDEN_IDS = {"minilm": ("all-MiniLM-L6-v2.st.jsonl", 512), "embeddinggemma": ("embeddinggemma-300m.st.jsonl", 2048)}
DISPLAY = {"embeddinggemma": "EmbeddingGemma-300M", "minilm": "all-MiniLM-L6-v2", "gemma3-270m": "Gemma-3-270M",
           "smollm2": "SmolLM2-135M"}
THROUGHPUT_UNITS = ("texts/s", "tokens/s")

# ---------------------------------------------------------------------------
# GGUF shapes


# ggml type id -> (elements per block, bytes per block); types missing here get n_bytes None.
_GGML_TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
               7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 9: ("Q8_1", 32, 36), 10: ("Q2_K", 256, 84),
               11: ("Q3_K", 256, 110), 12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210),
               15: ("Q8_K", 256, 292), 24: ("I8", 1, 1), 25: ("I16", 1, 2), 26: ("I32", 1, 4), 27: ("I64", 1, 8),
               28: ("F64", 1, 8), 30: ("BF16", 1, 2)}


def read_gguf(path):
    """Metadata (scalars; arrays as their length) and tensor table (name, shape, type, n_bytes) of a GGUF file."""
    with open(path, "rb") as f:
        def rd(fmt):
            return struct.unpack("<" + fmt, f.read(struct.calcsize("<" + fmt)))[0]

        def rstr():
            return f.read(rd("Q")).decode("utf-8", "replace")

        scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

        def value(t):
            if t in scalar:
                return rd(scalar[t])
            if t == 8:
                return rstr()
            if t == 9:
                et, n = rd("I"), rd("Q")
                if et in scalar:
                    f.seek(n * struct.calcsize(scalar[et]), 1)
                else:
                    for _ in range(n):
                        value(et)
                return n
            raise ValueError(f"{path}: unknown GGUF value type {t}")

        if f.read(4) != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        rd("I")  # version
        n_tensors, n_kv = rd("Q"), rd("Q")
        meta = {}
        for _ in range(n_kv):
            key = rstr()
            meta[key] = value(rd("I"))
        tensors = []
        for _ in range(n_tensors):
            name = rstr()
            shape = [rd("Q") for _ in range(rd("I"))]
            t = rd("I")
            rd("Q")  # offset
            n = 1
            for d in shape:
                n *= d
            typ = _GGML_TYPES.get(t)
            tensors.append(dict(name=name, shape=shape, type=typ[0] if typ else str(t),
                                n_bytes=n // typ[1] * typ[2] if typ else None))
    return meta, tensors


def _numel(t):
    n = 1
    for d in t["shape"]:
        n *= d
    return n


def _kiln_counts(tensors):
    """weight_bytes and macs_per_token as `kiln bench` counts them (to check a GGUF against a run's floors)."""
    rest = [t for t in tensors if t["name"] != "token_embd.weight"]
    byts = sum(t["n_bytes"] or 0 for t in rest)
    macs = sum(_numel(t) for t in rest
               if len(t["shape"]) == 2 and "position" not in t["name"] and "token_types" not in t["name"])
    return byts, macs


def _block_linear_macs(tensors):
    """Multiply-adds per token of the per-layer matmuls: every 2-D `blk.*` tensor is one k×n weight, k·n MACs."""
    return sum(_numel(t) for t in tensors if t["name"].startswith("blk.") and len(t["shape"]) == 2)


def work_bert(meta, tensors):
    """BERT encoder (all-MiniLM-L6-v2). Per token: the layers' matmuls, Σ k·n over Q, K, V, output, FFN up and
    down (6 · (4·384² + 2·384·1536) = 10,616,832 for MiniLM); token, position and type embeddings are
    gathers (0 MACs). Attention is bidirectional over the whole text: per layer, each of n tokens does
    QK (n·head_dim per head) and PV (n·head_dim per head), so 2·n²·(heads·head_dim) per layer.

    Check by hand, MiniLM "Hello world" (4 tokens): 4 · 10,616,832 = 42,467,328 in matmuls, plus
    6 layers · 2 · 4² · 384 = 73,728 in attention: 42,541,056 MACs, 85.1 M int8 ops; at 208 GOPS
    (one thread of the 12:00 run's Xeon) 0.41 ms, under its 1.08 ms memory floor, so that row is
    memory-bound.
    """
    a = meta["general.architecture"]
    heads = meta[f"{a}.attention.head_count"]
    width = meta[f"{a}.embedding_length"]  # heads · head_dim
    layers = meta[f"{a}.block_count"]
    return dict(family="bert", linear_macs_per_token=_block_linear_macs(tensors), per_text_macs=0, logits_macs=0,
                attn_width=width, heads=heads, layers=layers, global_layers=layers, local_layers=0, window=None,
                causal=False)


def work_gemma_embedding(meta, tensors):
    """EmbeddingGemma (Gemma 3 encoder). Per token: the layers' matmuls, Σ k·n over Q, K, V, output, gate, up
    and down (24 · (2·768² + 2·768·256 + 3·768·1152) = 101,449,728); the token embedding is a gather.
    Once per text, after pooling: the sentence-transformers projections dense_2 and dense_3
    (2 · 768 · 3072 = 4,718,592; `kiln bench`'s macs_per_token counts them per token). Attention is
    bidirectional: QK and PV, heads·head_dim (3 · 256 = 768) MACs each per key; every 6th layer is global
    (all n keys), the others see a symmetric window of sliding_window/2 = 256 keys each side (so ≤ 511).
    """
    a = meta["general.architecture"]
    heads = meta[f"{a}.attention.head_count"]
    hd = meta.get(f"{a}.attention.key_length") or meta[f"{a}.embedding_length"] // heads
    layers = meta[f"{a}.block_count"]
    n_global = sum(1 for i in range(layers) if i % 6 == 5)
    per_text = sum(_numel(t) for t in tensors if t["name"].startswith("dense_") and len(t["shape"]) == 2)
    return dict(family="gemma-embedding", linear_macs_per_token=_block_linear_macs(tensors), per_text_macs=per_text,
                logits_macs=0, attn_width=heads * hd, heads=heads, layers=layers, global_layers=n_global,
                local_layers=layers - n_global, window=meta[f"{a}.attention.sliding_window"], causal=False)


def work_decoder(meta, tensors):
    """A decoder (Gemma 3, llama/SmolLM2). Per token: the layers' matmuls, Σ k·n over Q, K, V, output, gate,
    up, down (Gemma-3-270M: 18 · (640·1024 + 2·640·256 + 1024·640 + 3·640·2048) = 100,270,080). Logits:
    `output.weight` or, tied, the token embedding, vocab · hidden (262,144 · 640 = 167,772,160 for
    Gemma-3-270M) for one position per forward (the last of a prompt; each decoded token). Attention is
    causal: a query at position p does QK and PV over p+1 keys on global layers and over min(p+1, window)
    on Gemma's local ones (every 6th layer global), heads·head_dim MACs each per key.
    Bytes per decode step: every tensor, the token embedding only when it is the tied output (an untied
    one is a gather of one row), plus the keys and values the step attends to (`decode_kv_bytes`).
    """
    a = meta["general.architecture"]
    heads = meta[f"{a}.attention.head_count"]
    hd = meta.get(f"{a}.attention.key_length") or meta[f"{a}.embedding_length"] // heads
    layers = meta[f"{a}.block_count"]
    window = meta.get(f"{a}.attention.sliding_window") if a.startswith("gemma") else None
    n_global = sum(1 for i in range(layers) if i % 6 == 5) if window else layers
    names = {t["name"]: t for t in tensors}
    out = names.get("output.weight") or names["token_embd.weight"]
    kv_heads = meta.get(f"{a}.attention.head_count_kv") or heads
    return dict(family="decoder", linear_macs_per_token=_block_linear_macs(tensors), per_text_macs=0,
                logits_macs=_numel(out), attn_width=heads * hd, kv_width=kv_heads * hd, heads=heads,
                layers=layers, global_layers=n_global,
                local_layers=layers - n_global, window=window, causal=True)


def model_work(gguf_path):
    """The multiply-add model of a GGUF (the `work_*` function of its family) and its byte counts."""
    meta, tensors = read_gguf(gguf_path)
    arch = meta["general.architecture"]
    if arch == "bert":
        w = work_bert(meta, tensors)
    elif arch == "gemma-embedding":
        w = work_gemma_embedding(meta, tensors)
    elif arch in ("gemma3", "llama"):
        w = work_decoder(meta, tensors)
    else:
        raise ValueError(f"no multiply-add count for architecture {arch}")
    names = {t["name"] for t in tensors}
    kb, km = _kiln_counts(tensors)
    w.update(gguf=Path(gguf_path).name, architecture=arch, kiln_weight_bytes=kb, kiln_macs_per_token=km,
             decode_weight_bytes=sum(t["n_bytes"] or 0 for t in tensors
                                     if not (t["name"] == "token_embd.weight" and "output.weight" in names)))
    return w


def decode_kv_bytes(w, prompt, steps, bytes_per_value=2):
    """Mean bytes of keys and values one decode step reads after a `prompt`-token prompt: every attended
    position's K and V rows (kv heads · head_dim each) on every layer, at f16 (llama.cpp's default cache
    type; kiln's f32 cache reads twice this). At SmolLM2's 538-token prompt this is 31% of the weights' bytes,
    so a decode floor without it is no floor at long contexts."""
    if not w.get("kv_width") or steps <= 0:
        return 0
    total = 0
    for s in range(steps):
        keys = prompt + s + 1
        local = min(keys, w["window"]) if w.get("window") else keys
        total += (w["global_layers"] * keys + w["local_layers"] * local) * 2 * w["kv_width"] * bytes_per_value
    return total / steps


def attention_macs(w, n, start=0):
    """Attention MACs (QK plus PV) of queries at positions start..n-1 over a sequence of n tokens."""
    total_keys_global = total_keys_local = 0
    win = w.get("window")
    for p in range(start, n):
        if w["causal"]:
            g = p + 1
            loc = min(p + 1, win) if win else g
        else:
            g = n
            r = win // 2 if win else n
            loc = min(n - 1, p + r - 1) - max(0, p - r + 1) + 1 if win else n
        total_keys_global += g
        total_keys_local += loc
    keys = w["global_layers"] * total_keys_global + w["local_layers"] * total_keys_local
    return 2 * keys * w["attn_width"]


def forward_macs(w, n):
    """MACs of one forward pass over an n-token text or prompt (a decoder's prompt: logits of the last position)."""
    return w["linear_macs_per_token"] * n + attention_macs(w, n) + w["per_text_macs"] + w["logits_macs"]


def decode_macs(w, prompt, steps):
    """MACs of `steps` decode steps after a `prompt`-token prompt (each: one token's matmuls, attention, logits)."""
    return ((w["linear_macs_per_token"] + w["logits_macs"]) * steps
            + attention_macs(w, prompt + steps, start=prompt))


# ---------------------------------------------------------------------------
# Token counts of old runs (rows without `tokens`), from the goldens the harness's texts come from


def _golden_lengths(name):
    """kiln's token count per line of sentences.txt (the goldens' ids, cut to the harness's context), or None."""
    if name not in GOLDEN_IDS:
        return None
    fname, ctx = GOLDEN_IDS[name]
    try:
        g = {json.loads(l)["text"]: json.loads(l) for l in (GOLDENS / fname).read_text().splitlines() if l.strip()}
        lines = [l for l in SENTENCES.read_text().splitlines() if l.strip()]
    except OSError:
        return None
    if not all(l in g for l in lines):
        return None
    return lines, [min(len(g[l]["token_ids"]), ctx) for l in lines]


def reconstruct_tokens(name, row):
    """Token counts of a row an older harness did not record, from the goldens; None when they cannot be checked.
    The batch is reconstructed as the harness builds it (line i % 24 of sentences.txt) and accepted only if
    its mean tokens per text equals the run's tokens/s ÷ texts/s."""
    gl = _golden_lengths(name)
    if gl is None:
        return None
    lines, lens = gl
    by_text = dict(zip(lines, lens))
    if row["workload"] == "short text latency":
        return {"tokens": by_text.get("Hello world"), "source": "goldens"} if "Hello world" in by_text else None
    if row["workload"].endswith("-token text latency"):
        long_text = " ".join(lines[-2].split()[:380])
        return {"tokens": by_text[long_text], "source": "goldens"} if long_text in by_text else None
    return None


def reconstruct_batch(name, texts_per_s, tokens_per_s):
    gl = _golden_lengths(name)
    if gl is None or not texts_per_s or not tokens_per_s:
        return None
    _, lens = gl
    mean = tokens_per_s / texts_per_s
    for n in (200, 1000, 100, 500, 2000):
        b = [lens[i % len(lens)] for i in range(n)]
        if abs(sum(b) / n - mean) < 1e-6 * mean:
            return dict(batch_texts=n, batch_lengths=_hist(b), source="goldens, matched to the run's tokens per text")
    return None


def _hist(lengths):
    h = {}
    for n in lengths:
        h[str(n)] = h.get(str(n), 0) + 1
    return dict(sorted(h.items(), key=lambda kv: int(kv[0])))


# ---------------------------------------------------------------------------
# Rooflines


def ceiling(doc, name):
    """(GOPS per thread, source) of the int8 ceiling for a model's rows: the raw-instruction probe
    (`int8_ceiling_gops_per_thread`) when the run recorded it anywhere (the model's floors, else the
    machine's, else another model's of the same run), before kiln's Q8_0 dot-sequence probe
    (`int8_peak_gops_per_thread`) from the same places."""
    fl = doc.get("floors", {}).get(name, {})
    m = doc.get("machine") or {}
    for key, what in (("int8_ceiling_gops_per_thread", "raw-instruction probe"),
                      ("int8_peak_gops_per_thread", "kiln's Q8_0 dot-sequence probe")):
        if fl.get(key):
            return fl[key], f"{key} ({what})"
        if m.get(key):
            return m[key], f"machine.{key} ({what})"
        vals = {n: f[key] for n, f in doc.get("floors", {}).items() if isinstance(f, dict) and f.get(key)}
        if vals:
            return max(vals.values()), f"{key} ({what}), best of this run's {', '.join(sorted(vals))} floors"
    return None, None


def _bandwidth(doc, name, threads):
    fl = doc.get("floors", {}).get(name, {})
    bw = (fl.get("read_bandwidth_gbs") or {}).get(str(threads))
    if bw is None:
        bw = ((doc.get("machine") or {}).get("read_bandwidth_gbs") or {}).get(str(threads))
    return bw


def find_gguf(name):
    home = Path(os.environ.get("KILN_HOME") or Path.home() / ".cache" / "kiln")
    files = sorted((home / "models" / name).glob("*.gguf"))
    return files[0] if files else None


def works_for(doc, log=print):
    """Per model, the multiply-add model: from the run's floors (`work`) or else from the model's GGUF in the
    kiln cache, checked against the run's recorded weight_bytes/macs_per_token where there are any."""
    works = {}
    for name in dict.fromkeys(r["model"] for r in doc["rows"]):
        fl = doc.get("floors", {}).get(name, {})
        if fl.get("work"):
            works[name] = dict(fl["work"])
            # Runs recorded before decode floors counted the KV cache lack its width: take it from the GGUF.
            path = find_gguf(name)
            if works[name].get("family") == "decoder" and "kv_width" not in works[name] and path:
                works[name]["kv_width"] = model_work(path).get("kv_width")
            continue
        path = find_gguf(name)
        if path is None:
            log(f"roofline: {name}: no work in the JSON and no GGUF in the kiln cache; its rows get no compute floor")
            continue
        w = model_work(path)
        if fl.get("weight_bytes") is not None and (fl["weight_bytes"] != w["kiln_weight_bytes"]
                                                   or fl.get("macs_per_token") != w["kiln_macs_per_token"]):
            log(f"roofline: {name}: {path.name} ({w['kiln_weight_bytes']} bytes, {w['kiln_macs_per_token']} MACs/token)"
                f" is not the run's model ({fl['weight_bytes']}, {fl.get('macs_per_token')}); no compute floor")
            continue
        w["source"] = f"{path.name} in the kiln cache" + (", checked against the run's floors" if fl else " (unchecked)")
        works[name] = w
    return works


def derive(doc, log=print):
    """Adds roofline, roofline_kind, roofline_parts and <system>_vs_roofline to every row that has one, and
    ceiling_source to floors. Rows whose inputs the JSON (or the checked goldens/GGUF) lacks get none."""
    works = works_for(doc, log)
    rows = doc["rows"]
    for name, w in works.items():
        fl = doc.setdefault("floors", {}).setdefault(name, {})
        fl.setdefault("work", {k: v for k, v in w.items() if k != "source"})
        c, src = ceiling(doc, name)
        if c:
            fl["ceiling_gops_per_thread"] = c
            fl["ceiling_source"] = src
    # Decode rows' memory floors (tokens/s) by threads, for the prefill and time-to-first-token rows of old runs.
    decode_floor = {(r["model"], r["threads"]): r["floor"] for r in rows if r["workload"] == "decode" and r.get("floor")}
    batch_info = {}
    for r in rows:
        for k in ("roofline", "roofline_kind", "roofline_parts", "kiln_vs_roofline", "llamacpp_vs_roofline",
                  "onnxruntime_vs_roofline"):
            r.pop(k, None)
        name, th, wl = r["model"], r["threads"], r["workload"]
        w = works.get(name)
        fl = doc.get("floors", {}).get(name, {})
        gops = fl.get("ceiling_gops_per_thread") or ceiling(doc, name)[0]
        rate = gops * 1e9 * th if gops else None  # int8 ops per second
        bw = _bandwidth(doc, name, th)
        mem_bytes = fl.get("weight_bytes") if w is None or w["family"] != "decoder" else \
            (fl.get("decode_weight_bytes") or w.get("decode_weight_bytes"))
        mem_s = mem_bytes / (bw * 1e9) if mem_bytes and bw else None
        parts = {}
        if wl in ("short text latency",) or wl.endswith("-token text latency"):
            tok = r.get("tokens")
            src = "run"
            if tok is None:
                rec = reconstruct_tokens(name, r)
                tok, src = (rec["tokens"], rec["source"]) if rec else (None, None)
            if mem_s is None and wl == "short text latency" and r.get("floor"):
                mem_s = r["floor"]
            if mem_s is not None:
                parts["memory"] = mem_s
            if w and tok and rate:
                macs = forward_macs(w, tok)
                parts.update(compute=2 * macs / rate, macs=macs, tokens=tok, tokens_source=src)
        elif wl in ("batch throughput", "batch tokens/s"):
            key = (name, th)
            if key not in batch_info:
                bi = None
                bt = next((x for x in rows if x["model"] == name and x["threads"] == th
                           and x["workload"] == "batch throughput"), None)
                bk = next((x for x in rows if x["model"] == name and x["threads"] == th
                           and x["workload"] == "batch tokens/s"), None)
                if bt and bt.get("batch_lengths"):
                    bi = dict(batch_texts=bt["batch_texts"], batch_lengths=bt["batch_lengths"], source="run")
                elif bt and bk and bt.get("kiln") and bk.get("kiln"):
                    # An older run: the batch rebuilt from the goldens, checked against kiln's tokens per text.
                    bi = reconstruct_batch(name, bt["kiln"], bk["kiln"])
                batch_info[key] = bi
            bi = batch_info[key]
            if bi and w and rate:
                lens = [(int(n), c) for n, c in bi["batch_lengths"].items()]
                texts = sum(c for _, c in lens)
                toks = sum(n * c for n, c in lens)
                macs = sum(forward_macs(w, n) * c for n, c in lens)
                per = texts if wl == "batch throughput" else toks
                parts.update(compute=per / (2 * macs / rate), macs=macs, tokens=toks, texts=texts,
                             tokens_source=bi["source"])
                if mem_s:
                    parts["memory"] = per / mem_s  # the weights streamed once for the whole batch
        elif wl in ("prefill", "time to first token", "decode") and w and w["family"] == "decoder":
            pt = (r.get("prompt_tokens") or {})
            prompt = pt.get("kiln") or pt.get("llamacpp")
            if mem_s is None and decode_floor.get((name, th)):
                mem_s = 1 / decode_floor[(name, th)]
            if wl == "decode":
                steps = r.get("generated_tokens", 64) - 1
                weights_s = 1 / r["floor"] if r.get("floor") else mem_s
                kv = decode_kv_bytes(w, prompt, steps) if prompt else 0
                if weights_s and bw:
                    parts["memory"] = 1 / (weights_s + kv / (bw * 1e9))
                    parts["kv_bytes_per_step"] = kv
                elif weights_s:  # no bandwidth recorded: the weights alone
                    parts["memory"] = 1 / weights_s
                if prompt and rate:
                    macs = decode_macs(w, prompt, steps)
                    parts.update(compute=steps / (2 * macs / rate), macs=macs / steps, tokens=steps,
                                 tokens_source=f"{steps} steps after a {prompt}-token prompt")
            elif prompt:
                macs = forward_macs(w, prompt)
                t_c = 2 * macs / rate if rate else None
                if wl == "prefill":
                    if mem_s:
                        parts["memory"] = prompt / mem_s
                    if t_c:
                        parts.update(compute=prompt / t_c, macs=macs, tokens=prompt, tokens_source="run")
                else:
                    if mem_s:
                        parts["memory"] = mem_s
                    if t_c:
                        parts.update(compute=t_c, macs=macs, tokens=prompt, tokens_source="run")
        floors = {k: parts[k] for k in ("memory", "compute") if k in parts}
        if not floors:
            continue
        thr = r["unit"] in THROUGHPUT_UNITS
        kind = (min if thr else max)(floors, key=floors.get)
        r["roofline"] = floors[kind]
        r["roofline_kind"] = kind
        r["roofline_parts"] = parts
        for sysname in ("kiln", "llamacpp", "onnxruntime"):
            v = r.get(sysname)
            if v:
                r[f"{sysname}_vs_roofline"] = v / r["roofline"] if thr else r["roofline"] / v
    return doc


# ---------------------------------------------------------------------------
# Machine kind


def machine_kind(doc):
    """`avx512` if kiln ran its AVX-512 VNNI kernels, `neon` for its NEON ones, `avx2` otherwise; None if the
    run did not record kiln's ISA."""
    isa = (doc.get("machine") or {}).get("kiln_isa")
    if not isa:
        return None
    return "avx512" if isa.startswith("avx512") else "neon" if isa.startswith("neon") else "avx2"


# ---------------------------------------------------------------------------
# The README table


def _fmt_s(s):
    if s >= 0.1:
        return f"{s:.2f} s"
    ms = s * 1e3
    return f"{ms:.2f} ms" if ms < 1 else f"{ms:.3g} ms" if ms < 100 else f"{ms:.0f} ms"


def _fmt(v, unit):
    if v is None:
        return ""
    if unit == "s":
        return _fmt_s(v)
    if unit == "bytes":
        return f"{v / 1e6:.0f} MB"
    u = "tok/s" if unit == "tokens/s" else unit
    return f"{v:.3g} {u}" if v < 1000 else f"{v:.0f} {u}"


def _ratio(r, other):
    v = r.get("ratio" if other == "llamacpp" else "ratio_onnxruntime")
    if v is None:
        return ""
    if r["unit"] in THROUGHPUT_UNITS:
        return f"{v:.2f}× faster" if v >= 1 else f"{v:.2f}× (slower)"
    return f"{v:.2f}"


def _pct(x):
    return "" if x is None else f"{100 * x:.0f}%"


def workload_label(r):
    wl, parts = r["workload"], r.get("roofline_parts") or {}
    tok = parts.get("tokens") or r.get("tokens")
    if wl == "short text latency":
        return '"Hello world" warm' + (f" ({tok} tokens)" if tok else "")
    if wl.endswith("-token text latency"):
        return f"long text, {tok} tokens" if tok else wl.replace(" latency", "")
    if wl == "batch throughput":
        n = parts.get("texts") or r.get("batch_texts")
        return f"{n} mixed texts" if n else "mixed texts"
    if wl == "batch tokens/s":
        return "… the same batch in tokens/s"
    if wl == "start_to_first_embedding_s":
        return "start → first embedding"
    if wl.startswith("start→first, first open"):
        return "… first open (writes the pack cache)"
    if wl.startswith("start→first, pack cache off"):
        return "… pack cache off"
    if wl in ("peak_rss_bytes", "peak RSS"):
        return "peak RSS"
    pt = (r.get("prompt_tokens") or {})
    p = pt.get("kiln") or pt.get("llamacpp")
    if wl == "prefill":
        return f"prefill, {p}-token prompt" if p else "prefill"
    if wl == "decode":
        return f"decode, {r.get('generated_tokens', 64)} greedy tokens"
    return wl


def markdown_table(doc):
    lines = ["| model | workload | threads | kiln | llama.cpp | kiln / llama.cpp | ONNX Runtime int8 | roofline |"
             " of roofline: kiln / llama.cpp |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        u = r["unit"]
        k = "failed" if r.get("kiln") is None else _fmt(r["kiln"], u)
        ort = ""
        if "onnxruntime" in r:
            ort = _fmt(r["onnxruntime"], u)
            if r.get("ratio_onnxruntime") is not None:
                rr = r["ratio_onnxruntime"]
                ort += f" ({rr:.1f}× faster)" if u in THROUGHPUT_UNITS else f" (kiln {rr:.2f}×)"
        roof = f"{_fmt(r['roofline'], u)} ({r['roofline_kind']})" if "roofline" in r else ""
        frac = ""
        if "roofline" in r:
            frac = f"{_pct(r.get('kiln_vs_roofline')) or '–'} / {_pct(r.get('llamacpp_vs_roofline'))}"
            if "onnxruntime_vs_roofline" in r:
                frac += f" (ORT {_pct(r['onnxruntime_vs_roofline'])})"
        lines.append(f"| {DISPLAY.get(r['model'], r['model'])} | {workload_label(r)} | {r['threads']} | {k} |"
                     f" {_fmt(r['llamacpp'], u)} | {_ratio(r, 'llamacpp')} | {ort} | {roof} | {frac} |")
    return "\n".join(lines)


def table_notes(doc):
    out = []
    srcs = {}
    for name, fl in doc.get("floors", {}).items():
        if isinstance(fl, dict) and fl.get("ceiling_source"):
            srcs.setdefault((round(fl["ceiling_gops_per_thread"], 1), fl["ceiling_source"]), []).append(name)
    for (g, s), names in srcs.items():
        out.append(f"int8 ceiling {g:.1f} GOPS per thread (2 ops per multiply-add) for {', '.join(names)}: {s}")
    out.append("roofline: the tighter of the memory floor (weight bytes one pass reads / measured read bandwidth; "
               "a batch reads them once, decode every step along with the f16 keys and values it attends to) and the compute floor (2 × "
               "multiply-adds from the GGUF shapes, attention included, / (int8 ceiling × threads)); "
               "of roofline: roofline / time for latencies, throughput / roofline for throughputs (100% = at the roofline)")
    return out


# ---------------------------------------------------------------------------
# The SVG chart


def _esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


HALO = 'paint-order="stroke" stroke="#ffffff" stroke-width="3" stroke-linejoin="round"'  # labels over grid lines
SYSTEMS = (("kiln", "kiln", "#e8590c"), ("llamacpp", "llama.cpp", "#1971c2"), ("onnxruntime", "ONNX Runtime int8", "#2f9e44"))


def machine_line(doc):
    m = doc.get("machine") or {}
    cpu = m.get("cpu") or doc.get("cpu") or "unknown CPU"
    bits = [cpu]
    if m.get("family"):
        bits.append(f"family {m['family']} model {m.get('model')}")
    if m.get("kiln_isa"):
        bits.append(f"kiln ISA {m['kiln_isa']}")
    else:
        flags = doc.get("isa") or []
        best = "AVX-512 VNNI" if "avx512_vnni" in flags else "AVX2" if "avx2" in flags else ", ".join(flags)
        bits.append(f"CPU has {best} (kiln's ISA not recorded)")
    th = doc.get("threads") or m.get("vcpus")
    if th:
        bits.append(f"{th} vCPUs")
    if m.get("l3"):
        l3 = m["l3"]
        if l3.endswith("K") and l3[:-1].isdigit() and int(l3[:-1]) >= 1024:
            l3 = f"{int(l3[:-1]) / 1024:.0f} MiB"
        bits.append(f"L3 {l3}")
    return " · ".join(bits)


def svg_chart(doc):
    """Horizontal bars per workload row: each system's fraction of the row's roofline (100% = at the roofline),
    grouped by model; hand-written SVG (no plotting library), legible on GitHub and in a browser."""
    rows = [r for r in doc["rows"] if "roofline" in r and r["workload"] != "batch tokens/s"]
    W, left, right = 1100, 330, 70
    plot_w = W - left - right
    bar_h, bar_gap, group_gap, model_h = 15, 3, 14, 30
    top = 128
    vmax = max([1.0] + [r.get(f"{s}_vs_roofline", 0) for r in rows for s, _, _ in SYSTEMS])
    vmax = min(2.0, int(vmax * 4 + 0.999) / 4)  # a multiple of 25%, at most 200% (longer bars are clipped)

    def x(v):
        return left + plot_w * min(v, vmax) / vmax

    def present(r):
        return [s for s in SYSTEMS if r.get(f"{s[0]}_vs_roofline") is not None
                or (s[0] == "kiln" and r.get("kiln") is None) or (s[0] == "onnxruntime" and "onnxruntime" in r)]

    models = list(dict.fromkeys(r["model"] for r in rows))
    body = sum(model_h + sum(len(present(r)) * (bar_h + bar_gap) - bar_gap + group_gap
                             for r in rows if r["model"] == m) for m in models)
    over = any(r.get(f"{s}_vs_roofline", 0) > 1 for r in rows for s, _, _ in SYSTEMS)
    height = top + body + 40 + (16 if over else 0) + 18
    date = doc.get("time", "").replace("T", " ").replace("Z", " UTC")
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" '
         f'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">',
         f'<rect width="{W}" height="{height}" fill="#ffffff"/>',
         '<text x="20" y="28" font-size="17" font-weight="bold" fill="#212529">kiln, llama.cpp and ONNX Runtime as a '
         'fraction of the roofline (100% = at the hardware floor)</text>',
         f'<text x="20" y="50" font-size="13" fill="#495057">{_esc(machine_line(doc))} · {_esc(date)}</text>',
         '<text x="20" y="68" font-size="11" fill="#868e96">roofline per row: the tighter of weight bytes ÷ measured read '
         'bandwidth and 2 × multiply-adds ÷ (int8 ceiling × threads); bar = roofline ÷ time (latency) or rate ÷ roofline '
         '(throughput)</text>']
    lx = 20
    for _, label, color in SYSTEMS:
        o.append(f'<rect x="{lx}" y="82" width="14" height="12" fill="{color}"/>'
                 f'<text x="{lx + 20}" y="92" fill="#212529">{_esc(label)}</text>')
        lx += 44 + 8 * len(label)
    y_start, y_end = top - 10, top + body - group_gap + 6
    t = 0.0
    while t <= vmax + 1e-9:
        gx = x(t)
        strong = abs(t - 1.0) < 1e-9
        dash = "" if strong else ' stroke-dasharray="3,3"'
        col = "#c92a2a" if strong else "#ced4da"
        o.append(f'<line x1="{gx:.1f}" y1="{y_start}" x2="{gx:.1f}" y2="{y_end}" stroke="{col}"'
                 f' stroke-width="{1.5 if strong else 1}"{dash}/>')
        lab = f'{100 * t:.0f}%{" = roofline" if strong else ""}'
        tc = "#c92a2a" if strong else "#495057"
        for ty in (y_start - 6, y_end + 15):
            o.append(f'<text x="{gx:.1f}" y="{ty}" text-anchor="middle" fill="{tc}">{lab}</text>')
        t += 0.25
    y = top
    for m in models:
        o.append(f'<rect x="14" y="{y + 2}" width="{W - 28}" height="{model_h - 8}" fill="#f1f3f5" rx="3"/>'
                 f'<text x="22" y="{y + 18}" font-size="13" font-weight="bold" fill="#212529">'
                 f'{_esc(DISPLAY.get(m, m))}</text>')
        y += model_h
        for r in (r for r in rows if r["model"] == m):
            ps = present(r)
            gh = len(ps) * (bar_h + bar_gap) - bar_gap
            th = f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}"
            o.append(f'<text x="{left - 10}" y="{y + gh / 2 - 3:.1f}" text-anchor="end" fill="#212529">'
                     f'{_esc(workload_label(r))} · {th}</text>')
            o.append(f'<text x="{left - 10}" y="{y + gh / 2 + 12:.1f}" text-anchor="end" font-size="11" fill="#868e96">'
                     f'roofline {_esc(_fmt(r["roofline"], r["unit"]))} ({r["roofline_kind"]})</text>')
            for s, label, color in ps:
                v = r.get(f"{s}_vs_roofline")
                if v is None:
                    o.append(f'<text x="{left + 4}" y="{y + bar_h - 3}" fill="{color}" font-style="italic">'
                             f'{_esc(label)}: {"failed" if s == "kiln" else "no roofline"}</text>')
                else:
                    measured = _fmt(r[s], r["unit"])
                    o.append(f'<rect x="{left}" y="{y}" width="{x(v) - left:.1f}" height="{bar_h}" fill="{color}">'
                             f'<title>{_esc(label)}: {_esc(measured)}, {100 * v:.0f}% of the roofline</title></rect>')
                    if v > vmax:
                        o.append(f'<text x="{x(vmax) - 4:.1f}" y="{y + bar_h - 3}" text-anchor="end" fill="#ffffff" '
                                 f'font-weight="bold">»</text>')
                    o.append(f'<text x="{x(v) + 5:.1f}" y="{y + bar_h - 3}" fill="#212529" {HALO}>{100 * v:.0f}% '
                             f'<tspan fill="#868e96">{_esc(label)}, {_esc(measured)}</tspan></text>')
                y += bar_h + bar_gap
            y += group_gap - bar_gap
    fy = y_end + 36
    if over:
        o.append(f'<text x="20" y="{fy}" font-size="11" fill="#868e96">Above 100% of a memory roofline: faster than '
                 'streaming the weights from DRAM at the measured bandwidth, i.e. they stayed in cache between the warm '
                 'repetitions.</text>')
        fy += 16
    o.append(f'<text x="20" y="{fy}" font-size="11" fill="#868e96">scripts/bench-vs-llamacpp · '
             f'{_esc(notes_ceiling(doc))}</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def notes_ceiling(doc):
    by = {}
    for name, fl in doc.get("floors", {}).items():
        if isinstance(fl, dict) and fl.get("ceiling_gops_per_thread"):
            kind = "raw-instruction probe" if "int8_ceiling" in fl.get("ceiling_source", "") else "kiln's Q8_0 dot probe"
            by.setdefault(kind, []).append(f"{DISPLAY.get(name, name)} {fl['ceiling_gops_per_thread']:.0f}")
    return ("int8 ceiling, GOPS per thread: " + "; ".join(f"{', '.join(v)} ({k})" for k, v in by.items())) if by else ""


def from_json(path, svg_path=None, log=print):
    """Recomputes a results JSON's derived fields; prints the table, writes the SVG; returns the document."""
    doc = json.loads(Path(path).read_text())
    derive(doc, log)
    print(f"\n{machine_line(doc)} · {doc.get('time', '')}\n")
    print(markdown_table(doc))
    for line in table_notes(doc):
        print(line)
    svg_path = Path(svg_path) if svg_path else Path(path).with_suffix(".svg")
    svg_path.write_text(svg_chart(doc))
    print(f"chart: {svg_path}")
    return doc
