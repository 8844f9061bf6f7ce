"""A `grpcio` client of `kiln serve --grpc-port`, with stubs generated from
the project's proto/tei.proto (TEI's `tei.v1`) by `grpcio-tools`. Every
vector and token must equal what the HTTP routes of the same server
return. Run by scripts/test-server-clients.

usage: grpc_client.py HTTP_BASE GRPC_ADDR API_KEY PROTO_DIR
"""

import importlib
import sys
import tempfile

import grpc
import requests
from grpc_tools import protoc

# Beside this file: the HTTP clients' texts and checks.
from server_clients import TEXTS, check, f32



def stubs(proto_dir):
    """Generates tei_pb2 and tei_pb2_grpc from tei.proto and imports them."""
    out = tempfile.mkdtemp()
    rc = protoc.main(["grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out}",
                      f"--grpc_python_out={out}", f"{proto_dir}/tei.proto"])
    if rc != 0:
        raise SystemExit(f"grpc_tools.protoc failed on {proto_dir}/tei.proto ({rc})")
    sys.path.insert(0, out)
    return importlib.import_module("tei_pb2"), importlib.import_module("tei_pb2_grpc")


def code_of(call):
    """The gRPC status code (and details) a call fails with, or None."""
    try:
        call()
        return None, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def main():
    base, addr, key, proto_dir = sys.argv[1:5]
    pb, rpc = stubs(proto_dir)
    auth = {"Authorization": f"Bearer {key}"}
    md = [("authorization", f"Bearer {key}")]
    channel = grpc.insecure_channel(addr)
    embed = rpc.EmbedStub(channel)
    tokenize = rpc.TokenizeStub(channel)
    info = rpc.InfoStub(channel)

    http_info = requests.get(f"{base}/info", headers=auth).json()
    r = info.Info(pb.InfoRequest(), metadata=md)
    check(r.model_id == http_info["model_id"] and r.model_type == pb.MODEL_TYPE_EMBEDDING,
          f"Info: model {r.model_id}, an embedding model")
    check(r.max_input_length == http_info["max_input_length"]
          and r.max_batch_tokens == http_info["max_batch_tokens"]
          and r.tokenization_workers == http_info["tokenization_workers"] > 0, "Info: the HTTP server's limits")

    # Embed: one text per call, normalized or not, as /embed.
    want = [f32(v) for v in requests.post(f"{base}/embed", json={"inputs": TEXTS}, headers=auth).json()]
    for i, t in enumerate(TEXTS):
        r = embed.Embed(pb.EmbedRequest(inputs=t, normalize=True), metadata=md)
        check(f32(r.embeddings) == want[i], f"Embed [{i}] equals HTTP /embed")
        check(r.metadata.compute_tokens > 0 and r.metadata.compute_chars == len(t),
              f"Embed [{i}]: metadata {r.metadata.compute_tokens} tokens")
    raw = requests.post(f"{base}/embed", json={"inputs": TEXTS[0], "normalize": False}, headers=auth).json()[0]
    r = embed.Embed(pb.EmbedRequest(inputs=TEXTS[0], normalize=False), metadata=md)
    check(f32(r.embeddings) == f32(raw), "Embed normalize=false equals HTTP normalize=false")

    # EmbedStream: 100 messages, answered in order.
    texts = [f"{TEXTS[i % 3]} #{i}" for i in range(100)]
    want = [f32(v) for v in requests.post(f"{base}/embed", json={"inputs": texts}, headers=auth).json()]
    got = [f32(r.embeddings) for r in
           embed.EmbedStream((pb.EmbedRequest(inputs=t, normalize=True) for t in texts), metadata=md)]
    check(len(got) == 100, f"EmbedStream: 100 answers ({len(got)})")
    check(got == want, "EmbedStream: every vector equals HTTP /embed, in order")

    # EmbedRaw (older TEI's name) and EmbedAll: per-token states as /embed_all.
    states = requests.post(f"{base}/embed_all", json={"inputs": TEXTS[1]}, headers=auth).json()[0]
    want = [f32(v) for v in states]
    for name in ("EmbedRaw", "EmbedAll"):
        r = getattr(embed, name)(pb.EmbedAllRequest(inputs=TEXTS[1]), metadata=md)
        got = [f32(t.embeddings) for t in r.token_embeddings]
        check(got == want, f"{name}: {len(got)} token vectors equal HTTP /embed_all")
    got = list(embed.EmbedRawStream((pb.EmbedAllRequest(inputs=t) for t in [TEXTS[1]] * 3), metadata=md))
    check(len(got) == 3 and all([f32(t.embeddings) for t in r.token_embeddings] == want for r in got),
          "EmbedRawStream: 3 answers, each as /embed_all")

    # Tokenize and Decode, as /tokenize and /decode.
    toks = requests.post(f"{base}/tokenize", json={"inputs": TEXTS[0]}, headers=auth).json()[0]
    r = tokenize.Tokenize(pb.EncodeRequest(inputs=TEXTS[0], add_special_tokens=True), metadata=md)
    check([t.id for t in r.tokens] == [t["id"] for t in toks], f"Tokenize: {len(r.tokens)} ids equal /tokenize")
    check([t.special for t in r.tokens] == [t["special"] for t in toks], "Tokenize: special flags")
    got = list(tokenize.TokenizeStream((pb.EncodeRequest(inputs=t, add_special_tokens=True) for t in TEXTS),
                                       metadata=md))
    check(len(got) == 3 and [t.id for t in got[0].tokens] == [t["id"] for t in toks], "TokenizeStream")
    text = requests.post(f"{base}/decode", json={"ids": [t["id"] for t in toks]}, headers=auth).json()[0]
    r = tokenize.Decode(pb.DecodeRequest(ids=[t["id"] for t in toks]), metadata=md)
    check(r.text == text, f"Decode equals /decode: {r.text!r}")

    # Errors with their codes.
    code, _ = code_of(lambda: embed.Embed(pb.EmbedRequest(inputs="x")))
    check(code == grpc.StatusCode.UNAUTHENTICATED, f"no key -> UNAUTHENTICATED ({code})")
    code, _ = code_of(lambda: info.Info(pb.InfoRequest(), metadata=[("authorization", "Bearer wrong")]))
    check(code == grpc.StatusCode.UNAUTHENTICATED, f"wrong key -> UNAUTHENTICATED ({code})")
    code, _ = code_of(lambda: embed.Embed(pb.EmbedRequest(inputs=""), metadata=md))
    check(code == grpc.StatusCode.INVALID_ARGUMENT, f"empty input -> INVALID_ARGUMENT ({code})")
    limit = http_info["max_input_length"]
    code, details = code_of(lambda: embed.Embed(pb.EmbedRequest(inputs="word " * 2000), metadata=md))
    check(code == grpc.StatusCode.INVALID_ARGUMENT and f"limit of {limit}" in details,
          f"too long -> INVALID_ARGUMENT naming the limit: {details}")
    r = embed.Embed(pb.EmbedRequest(inputs="word " * 2000, truncate=True, normalize=True), metadata=md)
    check(r.metadata.compute_tokens == limit, f"truncate=true cuts to the limit ({r.metadata.compute_tokens})")
    code, details = code_of(lambda: embed.Embed(pb.EmbedRequest(inputs="x"), metadata=md + [("model", "nope")]))
    check(code == grpc.StatusCode.NOT_FOUND and http_info["model_id"] in details,
          f"unknown model -> NOT_FOUND naming the served ones: {details}")
    r = embed.Embed(pb.EmbedRequest(inputs=TEXTS[0], normalize=True),
                    metadata=md + [("model", http_info["model_id"])])
    check(len(r.embeddings) == http_info["dim"], "metadata `model` naming the served model")
    rerank = rpc.RerankStub(channel)
    code, _ = code_of(lambda: rerank.Rerank(pb.RerankRequest(query="q", texts=["a"]), metadata=md))
    check(code == grpc.StatusCode.UNIMPLEMENTED, f"Rerank -> UNIMPLEMENTED ({code})")
    code, _ = code_of(lambda: embed.EmbedSparse(pb.EmbedSparseRequest(inputs="x"), metadata=md))
    check(code == grpc.StatusCode.UNIMPLEMENTED, f"EmbedSparse -> UNIMPLEMENTED ({code})")

    metrics = requests.get(f"{base}/metrics", headers=auth).text
    check('route="/tei.v1.Embed/EmbedStream",status="200"} 100' in metrics,
          "metrics count each streamed message")
    print("all gRPC client checks passed")


if __name__ == "__main__":
    main()
