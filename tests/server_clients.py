"""Clients of `kiln serve` as users run them: the official `openai` package
and a TEI-style client (`requests`). Vectors must equal the library's (as
`kiln embed --format jsonl` prints them). Run by scripts/test-server-clients.

usage: server_clients.py BASE_URL API_KEY EXPECTED.jsonl
"""

import base64
import json
import struct
import sys

import openai
import requests

TEXTS = [
    "The quick brown fox jumps over the lazy dog.",
    "kiln serves embeddings",
    "A third, somewhat longer sentence about CPUs and vectors.",
]


def f32(xs):
    """Rounds Python floats to float32, as the server computed them."""
    return list(struct.unpack(f"{len(xs)}f", struct.pack(f"{len(xs)}f", *xs)))


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print(f"ok   {what}")


def main():
    base, key, expected_path = sys.argv[1], sys.argv[2], sys.argv[3]
    with open(expected_path) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    expected = [f32(r["embedding"]) for r in sorted(rows, key=lambda r: r["index"])]
    check([r["text"] for r in rows] == TEXTS, "library vectors are for the test texts")
    dim = len(expected[0])
    auth = {"Authorization": f"Bearer {key}"}

    # --- the official OpenAI client ------------------------------------
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
    # The client asks for base64 by default and decodes it itself.
    resp = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS)
    got = [f32(list(d.embedding)) for d in resp.data]
    check(got == expected, "openai client (default base64) equals the library")
    check([d.index for d in resp.data] == [0, 1, 2], "openai: indices in order")
    check(resp.usage.prompt_tokens > 0 and resp.usage.total_tokens == resp.usage.prompt_tokens,
          f"openai: usage {resp.usage.prompt_tokens} tokens")
    resp = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS, encoding_format="float")
    check([f32(d.embedding) for d in resp.data] == expected, "openai client (float) equals the library")
    resp = client.embeddings.create(model="all-MiniLM-L6-v2", input=TEXTS[0], dimensions=128,
                                    encoding_format="float")
    v = resp.data[0].embedding
    check(len(v) == 128 and abs(sum(x * x for x in v) - 1) < 1e-4, "openai: dimensions=128 is unit length")
    ids = requests.post(f"{base}/tokenize", json={"inputs": TEXTS[1]}, headers=auth).json()[0]
    ids = [t["id"] for t in ids]
    resp = client.embeddings.create(model="all-MiniLM-L6-v2", input=[ids], encoding_format="float")
    check(f32(resp.data[0].embedding) == expected[1], "openai: token-id input equals the text's vector")
    models = client.models.list()
    check([m.id for m in models.data] == ["all-MiniLM-L6-v2"], "openai: models.list")
    try:
        client.embeddings.create(model="all-MiniLM-L6-v2", input=[])
        check(False, "openai: empty input is refused")
    except openai.BadRequestError as e:
        check(e.status_code == 400 and "empty" in str(e), "openai: empty input -> BadRequestError 400")
    bad = openai.OpenAI(base_url=f"{base}/v1", api_key="wrong", max_retries=0)
    try:
        bad.embeddings.create(model="all-MiniLM-L6-v2", input="x")
        check(False, "openai: wrong key is refused")
    except openai.AuthenticationError as e:
        check(e.status_code == 401, "openai: wrong key -> AuthenticationError 401")

    # --- TEI-style client ------------------------------------------------
    r = requests.post(f"{base}/embed", json={"inputs": TEXTS}, headers=auth)
    check(r.status_code == 200, f"tei /embed: {r.status_code}")
    check([f32(v) for v in r.json()] == expected, "tei /embed equals the library")
    r = requests.post(f"{base}/embed", json={"inputs": TEXTS[0], "normalize": False}, headers=auth)
    raw = r.json()[0]
    norm = sum(x * x for x in raw) ** 0.5
    check(abs(norm - 1) > 1e-3 and all(abs(a / norm - b) < 1e-5 for a, b in zip(raw, expected[0])),
          "tei: normalize=false is the unnormalized vector")
    r = requests.post(f"{base}/embed", json={"inputs": TEXTS[0], "encoding_format": "ubinary"}, headers=auth)
    packed = r.json()[0]
    bits = [1 if x > 0 else 0 for x in expected[0]]
    want = [int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, dim, 8)]
    check(packed == want, "tei: ubinary equals numpy.packbits(v > 0)")
    r = requests.post(f"{base}/embed", json={"inputs": "word " * 600}, headers=auth)
    check(r.status_code == 413 and r.json()["error_type"] == "validation", "tei: too long -> 413")
    r = requests.post(f"{base}/embed", data="{not json", headers={**auth, "Content-Type": "application/json"})
    check(r.status_code == 400 and "error" in r.json(), "tei: malformed JSON -> 400")
    r = requests.get(f"{base}/info", headers=auth)
    check(r.status_code == 200 and r.json()["dim"] == dim, "tei: /info")
    check(requests.get(f"{base}/health").status_code == 200, "health without a key")
    r = requests.get(f"{base}/metrics", headers=auth)
    check('kiln_requests_total{route="/embed",status="200"}' in r.text, "metrics count requests")
    print("all client checks passed")


if __name__ == "__main__":
    main()
