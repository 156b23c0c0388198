"""The bundled all-MiniLM-L6-v2 (onnxruntime): meaning, shape, batch independence, reference vectors, model files."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.embeddings import (
    BUNDLED_MAX_TOKENS,
    BUNDLED_MODEL_ID,
    BUNDLED_ONNX_SHA256,
    MODEL_DIR,
    STANDARD_MODEL_ID,
    STANDARD_ONNX_PATH,
    STANDARD_ONNX_SHA256,
    TOKENIZER_SHA256,
    LocalEmbedder,
    make_embedder,
)
from bot.embeddings.local import FUSED_ONNX_PATH, FUSED_ONNX_SHA256, _bundled_onnx_path, _verify
from bot.errors import EmbeddingError, TextTooLongError

DATA = Path(__file__).resolve().parent / "data"
ROOT = DATA.parent.parent
CAT = "The cat sat on the mat."
FELINE = "A feline rested on the rug."
DEPLOY = "We deployed the web server at noon."

# Batching (sorting by length, padding to the batch's longest text) must not move a
# vector: the embedding cache and the duplicate scan reuse a text's vector whatever it
# was embedded with. The default model quantises each token's input with its own scale
# (never one scale for the whole batch, as onnxruntime's dynamic quantisation does) and
# the fp32 variant has no activation quantisation, so rows are independent; measured
# difference on x86_64: 0.0 for both.
BATCH_TOLERANCE = 1e-5
# The default's int8 products move vectors a little from the fp32 ones. Measured: cosine
# to sentence-transformers' reference ≥ 0.975 (mean 0.9965; fp32 ≥ 0.996); to the fp32
# variant's vectors of the Sphinx sample's paragraphs and the reference sentences ≥ 0.981
# (median 0.998).
REFERENCE_COSINE = {"standard": 0.97, "fp32": 0.99}
STANDARD_FP32_COSINE = 0.975
# The fp32 variant runs the fused file (scripts/fuse_model.py) under the bundled file's id,
# so its vectors must be the bundled file's up to fp32 rounding: measured on 2,000 NumPy
# docs passages, max |difference| 1.9e-7, min cosine 0.9999998.
FUSED_TOLERANCE = 1e-6


def read_sentences(path: Path) -> list[str]:
    """Exactly as scripts/make_reference_vectors.py reads them."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = [line.rstrip("\r\n") for line in f]
    return [line for line in lines if line.strip()]


@pytest.fixture(scope="module")
def fp32() -> LocalEmbedder:
    return LocalEmbedder.bundled(variant="fp32")


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    sentences = read_sentences(DATA / "reference_sentences.txt")
    vectors = np.load(DATA / "reference_vectors.npy")
    assert vectors.shape == (len(sentences), 384)
    return sentences, vectors


def test_identity(embedder: LocalEmbedder) -> None:
    assert embedder.model_id == STANDARD_MODEL_ID
    assert embedder.dim == 384
    assert embedder.max_tokens == BUNDLED_MAX_TOKENS == 256


def test_shape_dtype_and_unit_norm(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed([CAT, FELINE, DEPLOY, "x", "  "])
    assert vectors.dtype == np.float32
    assert vectors.shape == (5, 384)
    assert np.all(np.isfinite(vectors))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_list(embedder: LocalEmbedder) -> None:
    out = embedder.embed([])
    assert out.shape == (0, 384)
    assert out.dtype == np.float32


def test_meaning(embedder: LocalEmbedder) -> None:
    cat, feline, deploy = embedder.embed([CAT, FELINE, DEPLOY])
    similar = float(cat @ feline)
    unrelated = max(float(cat @ deploy), float(feline @ deploy))
    assert similar > 0.45, similar  # measured 0.550 (fp32: 0.554)
    assert unrelated < 0.2, unrelated  # measured 0.012 and 0.023 (fp32: 0.025 and 0.040)
    assert similar - unrelated > 0.35, (similar, unrelated)


def test_self_similarity_and_determinism(embedder: LocalEmbedder) -> None:
    first = embedder.embed([CAT, DEPLOY])
    again = embedder.embed([CAT, DEPLOY])
    np.testing.assert_array_equal(first, again)
    assert float(first[0] @ again[0]) == pytest.approx(1.0, abs=1e-5)


def test_a_fresh_model_gives_the_same_vectors(embedder: LocalEmbedder) -> None:
    other = LocalEmbedder.bundled(batch_size=2)
    np.testing.assert_allclose(
        other.embed([CAT, FELINE, DEPLOY]), embedder.embed([CAT, FELINE, DEPLOY]), atol=BATCH_TOLERANCE
    )


@pytest.mark.parametrize("variant", ["standard", "fp32"])
def test_batch_equals_one_by_one(variant: str, reference: tuple[list[str], np.ndarray]) -> None:
    # Texts of very different lengths (8 to 256+ word pieces), deliberately unsorted, so
    # batches pad short texts heavily and put each text next to different ones.
    model = LocalEmbedder.bundled(variant=variant)
    texts = reference[0][::-1] + [CAT, FELINE, DEPLOY] + sphinx_paragraphs(40)
    singles = np.vstack([model.embed([t], truncate=True) for t in texts])
    for batch_size in (3, 64):
        model.batch_size = batch_size
        batched = model.embed(texts, truncate=True)
        diff = float(np.abs(batched - singles).max())
        assert diff <= BATCH_TOLERANCE, f"batches of {batch_size} changed a vector by {diff}"
        assert float((batched * singles).sum(axis=1).min()) >= 0.99999


def test_rows_stay_in_input_order(embedder: LocalEmbedder) -> None:
    texts = ["a much longer sentence about deployments and web servers at noon", "hi", CAT]
    together = embedder.embed(texts)
    for i, text in enumerate(texts):
        np.testing.assert_allclose(together[i], embedder.embed([text])[0], atol=BATCH_TOLERANCE)


def test_batches_are_capped_by_count_and_padded_tokens(embedder: LocalEmbedder) -> None:
    lengths = [256] * 40 + [10] * 200 + [100, 7, 256, 3]
    batches = list(embedder._batches(lengths))
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= embedder.batch_size
        assert len(batch) * max(lengths[i] for i in batch) <= max(embedder.batch_tokens, max(lengths))
    assert max(len(b) for b in batches if lengths[b[-1]] == 256) == embedder.batch_tokens // 256


@pytest.mark.parametrize("variant", ["standard", "fp32"])
def test_matches_sentence_transformers_reference(variant: str, reference: tuple[list[str], np.ndarray]) -> None:
    sentences, expected = reference
    model = LocalEmbedder.bundled(variant=variant)
    cosines = (model.embed(sentences, truncate=True) * expected).sum(axis=1)
    worst = int(np.argmin(cosines))
    assert cosines.min() >= REFERENCE_COSINE[variant], f"sentence {worst} {sentences[worst][:60]!r}: {cosines[worst]:.4f}"
    assert cosines.mean() >= 0.995
    # The reference set really exercises truncation.
    assert max(model.count_tokens_many(sentences)) > BUNDLED_MAX_TOKENS


def test_count_tokens(embedder: LocalEmbedder) -> None:
    assert embedder.count_tokens("hello") == 3  # [CLS] hello [SEP]
    assert embedder.count_tokens("") == 2
    assert embedder.count_tokens(CAT) == 9  # the cat sat on the mat . + 2 specials
    texts = ["hello", CAT, "word " * 300]
    assert embedder.count_tokens_many(texts) == [embedder.count_tokens(t) for t in texts]
    assert embedder.count_tokens("word " * 300) == 302  # counting never truncates


def test_text_at_the_limit_is_accepted(embedder: LocalEmbedder) -> None:
    text = " ".join(["word"] * (BUNDLED_MAX_TOKENS - 2))
    assert embedder.count_tokens(text) == BUNDLED_MAX_TOKENS
    assert embedder.embed([text]).shape == (1, 384)


def test_text_over_the_limit_is_refused(embedder: LocalEmbedder) -> None:
    text = " ".join(["word"] * (BUNDLED_MAX_TOKENS - 1))
    with pytest.raises(TextTooLongError) as info:
        embedder.embed(["short", text])
    message = str(info.value)
    assert "text 1" in message
    assert "257" in message and "256" in message
    assert isinstance(info.value, EmbeddingError)


def test_truncate_embeds_the_first_256_word_pieces(embedder: LocalEmbedder) -> None:
    head = " ".join(["word"] * (BUNDLED_MAX_TOKENS - 2))
    long_text = head + " and then a completely different tail about cats" * 20
    truncated = embedder.embed([long_text], truncate=True)
    np.testing.assert_allclose(truncated, embedder.embed([head]), atol=BATCH_TOLERANCE)


# --- model files ---------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_verify_accepts_the_right_checksum(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"weights")
    _verify(path, _sha256(path))
    _verify(_bundled_onnx_path(), BUNDLED_ONNX_SHA256)
    _verify(MODEL_DIR / "tokenizer.json", TOKENIZER_SHA256)


def test_verify_rejects_a_corrupted_model(tmp_path: Path) -> None:
    copy = tmp_path / "model.onnx"
    shutil.copyfile(_bundled_onnx_path(), copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF  # flip one byte
    copy.write_bytes(bytes(data))
    with pytest.raises(EmbeddingError) as info:
        _verify(copy, BUNDLED_ONNX_SHA256)
    message = str(info.value)
    assert str(copy) in message
    assert "sha256" in message
    assert BUNDLED_ONNX_SHA256[:12] in message
    assert "reinstall" in message


def test_verify_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(EmbeddingError, match="model file missing"):
        _verify(tmp_path / "nope.onnx", BUNDLED_ONNX_SHA256)


def _model_folder(tmp_path: Path, name: str = "my-minilm") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    shutil.copyfile(_bundled_onnx_path(), folder / "model.onnx")
    shutil.copyfile(MODEL_DIR / "tokenizer.json", folder / "tokenizer.json")
    return folder


def test_from_folder(tmp_path: Path, fp32: LocalEmbedder) -> None:
    folder = _model_folder(tmp_path)
    own = LocalEmbedder.from_folder(folder, batch_size=4)
    assert own.model_id == f"my-minilm-{BUNDLED_ONNX_SHA256[:12]}"
    assert own.model_id != fp32.model_id  # a team's model never shares the bundled model's vectors
    assert own.dim == 384
    assert own.batch_size == 4
    assert own.max_tokens == 512  # no config: BERT's limit
    np.testing.assert_allclose(own.embed([CAT, DEPLOY]), fp32.embed([CAT, DEPLOY]), atol=BATCH_TOLERANCE)


def test_from_folder_reads_the_declared_limit(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    own = LocalEmbedder.from_folder(folder)
    assert own.max_tokens == 128
    with pytest.raises(TextTooLongError):
        own.embed(["word " * 200])


def test_from_folder_without_tokenizer(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    (folder / "tokenizer.json").unlink()
    with pytest.raises(EmbeddingError) as info:
        LocalEmbedder.from_folder(folder)
    message = str(info.value)
    assert "tokenizer.json" in message
    assert "EMBED_MODEL_PATH" in message
    assert str(folder) in message


def test_from_folder_with_two_models(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    shutil.copyfile(folder / "model.onnx", folder / "other.onnx")
    with pytest.raises(EmbeddingError, match="exactly one .onnx"):
        LocalEmbedder.from_folder(folder)


def test_from_folder_with_a_broken_onnx_file(tmp_path: Path) -> None:
    folder = _model_folder(tmp_path)
    (folder / "model.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(EmbeddingError, match="cannot load ONNX model"):
        LocalEmbedder.from_folder(folder)


# --- the two shipped files (scripts/fuse_model.py) -----------------------------------


def sphinx_paragraphs(limit: int = 300) -> list[str]:
    """Real documentation passages: the paragraphs of the Sphinx sample's files."""
    paragraphs = []
    for path in sorted((DATA / "sphinx_sample").rglob("*.rst")):
        paragraphs += [p for p in path.read_text(encoding="utf-8").split("\n\n") if len(p.split()) >= 5]
    return paragraphs[:limit]


def test_standard_runs_every_product_in_int8_with_per_row_scales(embedder: LocalEmbedder) -> None:
    import onnx

    _verify(STANDARD_ONNX_PATH, STANDARD_ONNX_SHA256)
    assert STANDARD_ONNX_PATH.stat().st_size < 25_000_000  # small enough for the git repository
    nodes = onnx.load(str(STANDARD_ONNX_PATH)).graph.node
    ops = [node.op_type for node in nodes]
    # Q, K, V and the three other products of each of 6 layers; one quantiser per distinct input
    assert (ops.count("MatMulIntegerToFloat"), ops.count("QuantizeLinear"), ops.count("MultiHeadAttention")) == (36, 24, 6)
    assert ops.count("MatMul") == ops.count("Attention") == ops.count("DynamicQuantizeLinear") == 0
    block = {node.input[0]: next(a.i for a in node.attribute if a.name == "block_size")
             for node in nodes if node.op_type == "QuantizeLinear"}
    assert set(block.values()) == {384, 1536}  # each scale covers one token's whole row, never the batch
    assert embedder.model_id == STANDARD_MODEL_ID


def test_fp32_keeps_the_bundled_models_id_and_file(fp32: LocalEmbedder, embedder: LocalEmbedder) -> None:
    import onnx

    _verify(FUSED_ONNX_PATH, FUSED_ONNX_SHA256)
    assert FUSED_ONNX_PATH.stat().st_size < 25_000_000  # weights stay int8 × scale: small enough for git
    ops = [node.op_type for node in onnx.load(str(FUSED_ONNX_PATH)).graph.node]
    assert (ops.count("Attention"), ops.count("BiasGelu"), ops.count("SkipLayerNormalization")) == (6, 6, 12)
    # the vectors of every index built before the int8 default: choosing fp32 keeps such an index
    assert fp32.model_id == BUNDLED_MODEL_ID != embedder.model_id
    assert (fp32.dim, fp32.max_tokens) == (384, BUNDLED_MAX_TOKENS)


def test_settings_choose_the_local_variant(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    assert make_embedder(make_settings(tmp_path)).model_id == STANDARD_MODEL_ID
    assert make_embedder(make_settings(tmp_path, embed_local_variant="fp32")).model_id == BUNDLED_MODEL_ID


@pytest.mark.parametrize(("name", "path", "variant"), [
    ("STANDARD_ONNX_PATH", STANDARD_ONNX_PATH, "standard"),
    ("FUSED_ONNX_PATH", FUSED_ONNX_PATH, "fp32"),
])
def test_shipped_file_refuses_to_load_when_changed(
    name: str, path: Path, variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = tmp_path / path.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    monkeypatch.setattr(f"bot.embeddings.local.{name}", copy)
    with pytest.raises(EmbeddingError, match="sha256"):
        LocalEmbedder.bundled(variant=variant)


def test_standard_vectors_stay_close_to_fp32(embedder: LocalEmbedder, fp32: LocalEmbedder,
                                            reference: tuple[list[str], np.ndarray]) -> None:
    texts = sphinx_paragraphs() + reference[0]
    cosines = (embedder.embed(texts, truncate=True) * fp32.embed(texts, truncate=True)).sum(axis=1)
    assert cosines.min() >= STANDARD_FP32_COSINE, f"text {int(np.argmin(cosines))}: cosine {cosines.min():.4f}"
    assert float(np.median(cosines)) >= 0.995


def test_fused_file_gives_the_bundled_files_vectors(fp32: LocalEmbedder, reference: tuple[list[str], np.ndarray]) -> None:
    texts = sphinx_paragraphs() + reference[0]
    assert len(texts) > 250
    unfused = LocalEmbedder(_bundled_onnx_path(), MODEL_DIR / "tokenizer.json", model_id="unfused",
                            max_tokens=BUNDLED_MAX_TOKENS)
    expected, ours = unfused.embed(texts, truncate=True), fp32.embed(texts, truncate=True)
    diff = float(np.abs(ours - expected).max())
    assert diff <= FUSED_TOLERANCE, f"fused vectors differ by {diff}"
    assert float((ours * expected).sum(axis=1).min()) >= 1 - FUSED_TOLERANCE


@pytest.mark.parametrize(("flags", "pinned"), [([], FUSED_ONNX_SHA256), (["--int8"], STANDARD_ONNX_SHA256)])
def test_fuse_script_rebuilds_the_shipped_file_byte_for_byte(flags: list[str], pinned: str, tmp_path: Path) -> None:
    out = tmp_path / "model.onnx"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fuse_model.py"), *flags, "--out", str(out)], check=True,
        capture_output=True
    )
    # A new onnx/onnxruntime may write other bytes: then re-run the script, re-check the vectors, re-pin.
    assert _sha256(out) == pinned
