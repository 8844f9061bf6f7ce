"""Writes the tiny GGUF files the UI tests point the macro at (run once;
the outputs are committed). Hand-rolled GGUF v3 so no gguf-py is needed."""
import struct

def s(x):
    b = x.encode()
    return struct.pack("<Q", len(b)) + b

def gguf(kv, tensors):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for k, v in kv:
        out += s(k) + struct.pack("<I", 8) + s(v)  # string values only
    offset = 0
    data = b""
    for name, dims, ty, nbytes in tensors:
        out += s(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ty, offset)
        data += b"\0" * nbytes
        data += b"\0" * (-len(data) % 32)
        offset = len(data)
    out += b"\0" * (-len(out) % 32)
    return out + data

# A model of an architecture #[model] does not run.
open("llama.gguf", "wb").write(gguf([("general.architecture", "llama")],
                                    [("token_embd.weight", [32, 2], 0, 256)]))
# A bert file with a Q4_K tensor (type 12: 144 bytes per 256 values).
open("bert_q4_k.gguf", "wb").write(gguf([("general.architecture", "bert")],
                                        [("token_embd.weight", [256, 2], 12, 288)]))
