"""A map of the knowledge: every passage a point in 2-D, with what people asked laid over it.

One self-contained HTML file (data and drawing code inline, nothing fetched),
so an owner sees which topics are asked about and where the docs are thin.
Points are the passages' vectors projected on their two principal axes (PCA in
numpy, by subspace iteration on the 384x384 covariance: well under a second,
where t-SNE or UMAP would cost minutes and a dependency), coloured by top
folder. Groups come from spherical k-means in the full space, each labelled with its most telling words (frequent
in the group, rare elsewhere). Questions of the last days are projected the
same way: answered, or not (no confident answer or a "Not helpful" vote).
Past `max_points` passages, a random sample is plotted and the legend says so.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.errors import IndexNotBuiltError, KbError
from bot.questions import DAY
from bot.store import Store
from bot.vector_index import CompactVectors, in_memory

MAX_POINTS = 20_000  # ~1 MB of HTML; a canvas draws it at once
GROUPS = 12
LABEL_WORDS = 3
_WORD = re.compile(r"[a-z][a-z0-9'-]{2,}")
_STOP_WORDS = (
    "the and for are but not you your with this that from have has was were will can all any our out use "
    "its it's when what who how why where which there their they them then than also into more most some such "
    "only other each may must should would could been being about after before over under per via etc"
)
_STOP = frozenset(_STOP_WORDS.split())
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
           "#aec7e8", "#ffbb78", "#98df8a")


@dataclass(frozen=True)
class KnowledgeMap:
    """What the HTML draws; coordinates in [0, 1]."""

    total: int  # passages in the index
    xy: np.ndarray  # (points, 2)
    folders: list[str]
    folder_of: np.ndarray  # per point, an index into folders
    paths: list[str]
    path_of: np.ndarray  # per point, an index into paths
    labels: list[dict[str, object]]  # {"x", "y", "words", "size"} per group
    questions: list[dict[str, object]]  # {"x", "y", "text", "answered"}

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total, "shown": len(self.xy), "folders": self.folders,
            "colors": [PALETTE[i % len(PALETTE)] for i in range(len(self.folders))],
            "x": np.round(self.xy[:, 0], 4).tolist(), "y": np.round(self.xy[:, 1], 4).tolist(),
            "folder": self.folder_of.tolist(), "path": self.path_of.tolist(), "paths": self.paths,
            "labels": self.labels, "questions": self.questions,
        }


def build_map(
    store: Store, *, max_points: int = MAX_POINTS, groups: int = GROUPS, days: int = 30,
    now: float | None = None, seed: int = 0,
) -> KnowledgeMap:
    """The map of the active index, with the questions of the last `days` days."""
    gen = store.active_generation()
    if gen is None:
        raise IndexNotBuiltError(f"no index yet in {store.location}: run `kb-bot index` first")
    copy = in_memory(store, gen) or CompactVectors.from_pages(gen.dim, store.vector_pages(gen))
    if not len(copy):
        raise KbError("the index holds no passages: nothing to map")
    rng = np.random.default_rng(seed)
    rows = np.arange(len(copy)) if len(copy) <= max_points else np.sort(rng.choice(len(copy), max_points, replace=False))
    ids = copy.ids[rows]
    vectors = copy.vectors[rows].astype(np.float32)
    mean, axes = principal_axes(vectors)
    texts = _passages(store, ids.tolist())
    paths = sorted({path for path, _ in texts.values()})
    path_index = {p: n for n, p in enumerate(paths)}
    path_of = np.array([path_index[texts[i][0]] if i in texts else 0 for i in ids.tolist()], dtype=np.int64)
    folders = sorted({_top_folder(p) for p in paths})
    folder_index = [folders.index(_top_folder(p)) for p in paths]
    group_of = spherical_kmeans(vectors, min(groups, len(vectors)), rng)
    projected = (vectors - mean) @ axes
    low, span = projected.min(axis=0), np.maximum(np.ptp(projected, axis=0), 1e-9)

    def scale(points: np.ndarray) -> np.ndarray:
        return np.clip((points - low) / span, 0.0, 1.0)

    xy = scale(projected)
    words = [texts.get(i, ("", ""))[1] for i in ids.tolist()]
    labels = _labels(xy, group_of, words)
    questions = _questions(store, gen.model, scale, mean, axes, days, now)
    return KnowledgeMap(len(copy), xy, folders, np.array([folder_index[p] for p in path_of.tolist()], np.int64),
                        paths, path_of, labels, questions)


def principal_axes(vectors: np.ndarray, rounds: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """The mean and the two directions of greatest variance (columns), signs fixed so the map is stable.

    Subspace iteration on the covariance (an 8-wide block, `rounds` products)
    rather than a full `eigh`: the same two axes, and 100x cheaper on a busy machine.
    """
    dim = vectors.shape[1]
    if len(vectors) < 2:
        return np.zeros(dim, np.float32), np.eye(dim, 2, dtype=np.float32)
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    covariance = (centred.T @ centred).astype(np.float64)
    basis = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, min(8, dim))))[0]
    for _ in range(rounds):
        basis = np.linalg.qr(covariance @ basis)[0]
    _, small = np.linalg.eigh(basis.T @ covariance @ basis)
    axes = basis @ small[:, ::-1][:, :2]
    axes *= np.sign(axes[np.abs(axes).argmax(axis=0), [0, 1]])
    return mean, axes.astype(np.float32)


def spherical_kmeans(vectors: np.ndarray, k: int, rng: np.random.Generator, rounds: int = 20) -> np.ndarray:
    """Each vector's group: k-means on the unit sphere (cosine), seeded k-means++ style."""
    if k <= 1:
        return np.zeros(len(vectors), np.int64)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    centres = [unit[rng.integers(len(unit))]]
    for _ in range(k - 1):
        distance = np.clip(1.0 - (unit @ np.array(centres).T).max(axis=1), 0.0, None)
        total = distance.sum()
        centres.append(unit[rng.choice(len(unit), p=distance / total) if total > 0 else rng.integers(len(unit))])
    centre = np.array(centres)
    for _ in range(rounds):
        group = (unit @ centre.T).argmax(axis=1)
        sums = np.eye(k, dtype=unit.dtype)[group].T @ unit  # each group's sum, as one product
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        centre = np.where(norms > 0, sums / np.maximum(norms, 1e-12), centre)
    return (unit @ centre.T).argmax(axis=1)


def telling_words(texts_by_group: dict[int, list[str]], count: int = LABEL_WORDS) -> dict[int, list[str]]:
    """Per group, the words most frequent in it relative to all groups (a c-TF-IDF score)."""
    counts = {g: Counter(w for t in texts for w in _WORD.findall(t.lower()) if w not in _STOP)
              for g, texts in texts_by_group.items()}
    overall: Counter[str] = Counter()
    for c in counts.values():
        overall.update(c)
    total = sum(overall.values()) or 1
    out = {}
    for g, c in counts.items():
        size = sum(c.values()) or 1
        scored = sorted(c, key=lambda w: (-(c[w] / size) * math.log((c[w] / size) / (overall[w] / total) + 1), w))
        out[g] = scored[:count]
    return out


def _labels(xy: np.ndarray, group_of: np.ndarray, texts: list[str]) -> list[dict[str, object]]:
    by_group: dict[int, list[str]] = {}
    for g, text in zip(group_of.tolist(), texts):
        by_group.setdefault(g, []).append(text)
    words = telling_words(by_group)
    return [
        {"x": round(float(np.median(xy[group_of == g, 0])), 4), "y": round(float(np.median(xy[group_of == g, 1])), 4),
         "words": words[g], "size": int((group_of == g).sum())}
        for g in sorted(by_group)
    ]


def _questions(
    store: Store, model: str, scale: Callable[[np.ndarray], np.ndarray], mean: np.ndarray, axes: np.ndarray,
    days: int, now: float | None,
) -> list[dict[str, object]]:
    since = (time.time() if now is None else now) - days * DAY
    asked = [q for q in store.questions.since(since) if q.model == model]
    found = store.questions.vectors(model, [q.vector_key for q in asked])
    asked = [q for q in asked if q.vector_key in found and len(found[q.vector_key]) == len(mean)]
    if not asked:
        return []
    xy = scale((np.vstack([found[q.vector_key] for q in asked]) - mean) @ axes)
    return [
        {"x": round(float(x), 4), "y": round(float(y), 4), "text": q.text, "answered": q.confident and not q.not_helpful}
        for q, (x, y) in zip(asked, xy.tolist())
    ]


def _passages(store: Store, ids: list[int]) -> dict[int, tuple[str, str]]:
    """Chunk id -> (path, heading and text), fetched in batches under SQLite's parameter limit."""
    found = {}
    for start in range(0, len(ids), 900):
        for cid, row in store.chunks_by_id(ids[start : start + 900]).items():
            found[cid] = (row.path, f"{row.heading or ''} {row.text}")
    return found


def _top_folder(path: str) -> str:
    return path.split("/", 1)[0] if "/" in path else "(top level)"


def render_html(knowledge_map: KnowledgeMap) -> str:
    """The map as one HTML page; its data is JSON in a script tag (safe against `</script>` in questions)."""
    data = json.dumps(knowledge_map.as_dict(), ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    return (Path(__file__).with_name("knowledge_map.html").read_text(encoding="utf-8")).replace("/*DATA*/{}", data)


def screenshot(html: Path, png: Path, *, width: int = 1200, height: int = 900, timeout: float = 60.0) -> None:
    """A PNG of the page by headless Chromium (for pasting into Slack); a one-line error without one."""
    browser = next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        raise KbError("--png needs Chromium (e.g. `apt-get install chromium`); the HTML map was written")
    subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
         f"--screenshot={png.resolve()}", html.resolve().as_uri()],
        check=True, capture_output=True, timeout=timeout,
    )
