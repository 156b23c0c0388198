"""The duplicate scan without Slack: normalisation, candidates, and who is compared with whom.

Real SQLite files and the real bundled model; Slack-facing behaviour is in
tests/test_dupes_slack.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bot.cli import cli
from bot.dupes.flag import reply_text
from bot.dupes.match import _Kept, find_candidates, find_duplicates
from bot.dupes.normalise import candidate_text, normalize_text
from bot.dupes.prepare import preparation_label
from bot.dupes.rules import DupRules
from bot.embeddings import LocalEmbedder
from bot.errors import SettingsError
from bot.scheduler import scan_trigger
from bot.settings import Settings
from bot.slack.format import from_slack
from bot.store import Store, open_store
from bot.store.sqlite.store import SqliteStore
from tests.conftest import make_settings
from tests.test_structure import imported, modules

VPN = "How do I reset my VPN password? It expired over the weekend."
VPN_AGAIN = "my vpn password expired, how do I reset it?"
VPN_LONG = "How do I reset my VPN password? It expired over the weekend and the portal says invalid token."
OFFSITE = "Who is going to the offsite in Lisbon? Trying to coordinate flights."
T0 = 1_717_000_000.0
MINUTE, DAY = 60.0, 86400.0


def ts(offset: float) -> str:
    return f"{T0 + offset:.6f}"


@pytest.fixture
def store(kb_db: Path | str) -> Iterator[Store]:
    with open_store(kb_db) as store:
        yield store


def post(store: Store, offset: float, text: str, *, user: str = "U1", channel: str = "C1",
         thread: float | None = None) -> str:
    stamp = ts(offset)
    store.messages.record_message(channel=channel, ts=stamp, user=user, text=text,
                   thread_ts=ts(thread) if thread is not None else None)
    return stamp


def found(store: Store, embedder: LocalEmbedder, settings: Settings, **overrides: object) -> list[tuple[str, str]]:
    """(later ts, earlier ts) of each pair the scan would flag."""
    if overrides:
        settings = make_settings(settings.db_path.parent, **overrides)
    pairs = find_duplicates(store, embedder, DupRules.from_settings(settings), to_plain=from_slack).pairs
    return [(p.later.ts, p.earlier.ts) for p in pairs]


# --- normalisation and candidates -------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "plain"),
    [
        ("hi <@U04>, quick question", "hi , quick question"),
        ("see the <https://wiki.example.com/vpn|wiki page> for mac", "see the wiki page for mac"),
        ("see <https://wiki.example.com/vpn> for mac", "see for mac"),
        ("reposting from <#C456|eng>: anyone?", "reposting from #eng: anyone?"),
        ("<!here> deploy at 5", "deploy at 5"),
        ("run `alembic upgrade head` and it hangs", "run alembic upgrade head and it hangs"),
        ("fails with\n```\nKeyError: 'REDIS_URL'\n```\nany idea?", "fails with KeyError: 'REDIS_URL' any idea?"),
        ("help :pray: :+1::skin-tone-2: please", "help please"),
        ("standup moved to 10:15:30 today", "standup moved to 10:15:30 today"),
        ("*really* _urgent_ ~not~ test_payment_retry", "really urgent not test_payment_retry"),
        ("R&amp;D asks: is 3 &lt; 4?", "R&D asks: is 3 < 4?"),
    ],
)
def test_normalize_turns_slack_markup_into_plain_text(raw: str, plain: str) -> None:
    assert normalize_text(raw, from_slack) == plain


@pytest.mark.parametrize(
    "text",
    [
        ":tada: :tada:",
        "<https://example.com/docs/q2-okr-summary>",
        "https://example.com/docs/q2-okr-summary",
        "thanks!",
        "standup in 5",  # three words
        "ok ok ok ok",  # four words but eleven characters
        "<@U1> <@U2> <@U3> <@U4> :wave:",
    ],
)
def test_short_emoji_and_link_only_messages_are_not_candidates(text: str, settings: Settings) -> None:
    assert candidate_text(text, DupRules.from_settings(settings), from_slack) is None


def test_emoji_and_link_only_stay_out_even_without_length_limits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, dup_min_words=0, dup_min_chars=0)
    assert candidate_text(":tada:", DupRules.from_settings(settings), from_slack) is None
    assert candidate_text("<https://status.example.com>", DupRules.from_settings(settings), from_slack) is None
    assert candidate_text("ok", DupRules.from_settings(settings), from_slack) == "ok"


def test_a_labelled_link_counts_its_words(settings: Settings) -> None:
    text = "roadmap: <https://docs.example.com/q3|Q3 roadmap doc for comments>"
    assert candidate_text(text, DupRules.from_settings(settings), from_slack) == "roadmap: Q3 roadmap doc for comments"


# --- who is compared with whom ---------------------------------------------------------


def test_a_repeat_pairs_with_the_earlier_message(store: Store, embedder: LocalEmbedder, settings: Settings) -> None:
    first = post(store, 0, VPN)
    post(store, 60, OFFSITE, user="U2")
    again = post(store, 120, VPN_AGAIN, user="U3", channel="C2")  # other channels count too
    [pair] = find_duplicates(store, embedder, DupRules.from_settings(settings), to_plain=from_slack).pairs
    assert (pair.later.ts, pair.earlier.ts) == (again, first)
    assert pair.later.channel == "C2" and pair.score >= settings.dup_threshold
    assert pair.as_dict() == {
        "earlier": {"channel": "C1", "ts": first, "text": VPN},
        "later": {"channel": "C2", "ts": again, "text": VPN_AGAIN},
        "score": round(pair.score, 4),
        "judge": {"same": True, "probability": round(pair.verdict.probability, 4),
                  "reasons": ["shared words: vpn password expired reset"], "about": "vpn password expired reset"},
    }
    assert reply_text("https://x/p1", pair) == (
        f"This looks like <https://x/p1>: the same question about “vpn password expired reset”, "
        f"similarity {pair.score:.2f}"
    )


@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("When does the code freeze start for the Q3 release?", "When does the code freeze start for the Q4 release?"),
        ("Can someone review PR #1842? It's blocking the search rollout.",
         "Can someone review PR #1857? It's blocking the search rollout."),
        ("How do I enable SSO for the staging workspace?", "How do I disable SSO for the staging workspace?"),
        ("Who do I ask about the desk booking app in the London office?",
         "Who do I ask about the desk booking app in the Paris office?"),
        ("Does the Pro plan include SSO or is that Enterprise only?",
         "Does the Starter plan include SSO or is that Enterprise only?"),
    ],
)
def test_look_alikes_are_not_flagged(
    earlier: str, later: str, store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    post(store, 0, earlier)
    post(store, 60, later, user="U2")
    new, found_ = find_candidates(store, embedder, DupRules.from_settings(settings), to_plain=from_slack)
    # what a threshold alone would flag: measured 0.837-0.926 (the fp32 variant: 0.849-0.927)
    assert [score for _, score in found_[0].earlier][0] >= 0.83
    assert found(store, embedder, settings) == []


def test_a_look_alike_that_scores_higher_does_not_hide_the_repeat(
    store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    reworded = post(store, 0, "has release/3.3 been branched off main yet? I need my PAY-2231 fix in before the cut")
    look_alike = post(store, 60, "Is the v3.2 release branch cut yet? I have a fix for PAY-2231 that needs to go in.")
    later = post(store, 120, "Is the v3.3 release branch cut yet? I have a fix for PAY-2231 that needs to go in.")
    _, found_ = find_candidates(store, embedder, DupRules.from_settings(settings), to_plain=from_slack)
    assert [m.ts for m, _ in found_[-1].earlier] == [look_alike, reworded]  # best similarity first
    assert found(store, embedder, settings)[-1] == (later, reworded)
    assert found(store, embedder, settings, dup_candidates=1)[-1:] == []  # the old single best match: lost


def test_each_row_keeps_its_k_best_across_chunks() -> None:
    kept = _Kept.empty(rows=2, threshold=0.5, k=2)
    kept.add(np.array([0, 0, 1]), np.array([3, 4, 5]), np.array([0.6, 0.9, 0.55], dtype=np.float32))
    assert kept.floor.tolist() == pytest.approx([0.6, 0.5])  # row 0 is full: only better than 0.6 gets in
    kept.add(np.array([0, 1]), np.array([9, 10]), np.array([0.7, 0.8], dtype=np.float32))
    assert [(row, [(c, round(s, 2)) for c, s in m]) for row, m in kept.by_row()] == [
        (0, [(4, 0.9), (9, 0.7)]), (1, [(10, 0.8), (5, 0.55)])
    ]


def test_a_later_message_pairs_with_its_single_best_match(
    store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    long_one = post(store, 0, VPN_LONG)
    short_one = post(store, 60, VPN, user="U2")
    again = post(store, 120, VPN_AGAIN, user="U3")
    pairs = found(store, embedder, settings)
    assert pairs == [(short_one, long_one), (again, short_one)]


def test_replies_in_the_same_thread_are_not_repeats(store: Store, embedder: LocalEmbedder, settings: Settings) -> None:
    root = post(store, 0, VPN)
    post(store, 60, VPN_AGAIN, user="U2", thread=0)
    post(store, 120, VPN_LONG, user="U3", thread=0)
    assert found(store, embedder, settings) == []
    later = post(store, 180, VPN, user="U4")  # a new top-level post is a repeat
    assert found(store, embedder, settings) == [(later, root)]


def test_same_author_reposts_are_ignored_only_when_asked(
    store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    first = post(store, 0, VPN)
    again = post(store, 10 * MINUTE, VPN_AGAIN)
    assert found(store, embedder, settings) == [(again, first)]
    assert found(store, embedder, settings, dup_same_author_minutes=15) == []
    assert found(store, embedder, settings, dup_same_author_minutes=5) == [(again, first)]


def test_only_the_window_counts(store: Store, embedder: LocalEmbedder, settings: Settings) -> None:
    post(store, 0, VPN)
    again = post(store, 31 * DAY, VPN_AGAIN, user="U2")
    assert found(store, embedder, settings) == []
    assert found(store, embedder, settings, dup_window_days=40) == [(again, ts(0))]


def test_a_deleted_earlier_twin_is_not_a_match(store: Store, embedder: LocalEmbedder, settings: Settings) -> None:
    first = post(store, 0, VPN)
    post(store, 60, VPN_AGAIN, user="U2")
    store.messages.delete_message(channel="C1", ts=first)
    assert found(store, embedder, settings) == []


def test_a_deletion_handled_before_its_post_keeps_the_post_hidden(
    store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    store.messages.delete_message(channel="C1", ts=ts(0))  # the pool ran the deletion first
    post(store, 0, VPN)
    post(store, 60, VPN_AGAIN, user="U2")
    assert store.messages.get_message("C1", ts(0)) is None
    assert [m.ts for m in store.messages.unscanned_messages()] == [ts(60)]
    assert found(store, embedder, settings) == []


def stored_text(store: Store, ts: str) -> str | None:
    row = store.conn.execute(
        f"SELECT text FROM messages WHERE channel = 'C1' AND ts = {'?' if isinstance(store, SqliteStore) else '%s'}", (ts,)
    ).fetchone()
    return row[0] if row else None


def cached(store: Store, keys: dict[str, bytes]) -> list[str]:
    """The texts whose vector (`keys`: text → cache key) is in the embedding cache."""
    present = {bytes(key) for (key,) in store.conn.execute("SELECT key FROM embedding_cache")}
    return [text for text, key in keys.items() if key in present]


def test_a_deleted_message_loses_its_text_and_vector_and_an_edit_does_not_bring_them_back(
    store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    first, _, _ = post(store, 0, VPN), post(store, 60, VPN_AGAIN, user="U2"), post(store, 120, OFFSITE, user="U3")
    post(store, 180, OFFSITE, user="U4")  # the same text as another message: one shared vector
    found(store, embedder, settings)  # prepares all four
    keys = {text: bytes(key) for text, key in store.conn.execute("SELECT text, vector_key FROM messages ORDER BY ts")}
    assert cached(store, keys) == [VPN, VPN_AGAIN, OFFSITE]

    store.messages.delete_message(channel="C1", ts=first)
    store.messages.delete_message(channel="C1", ts=ts(120))
    store.messages.edit_message(channel="C1", ts=first, text=VPN_LONG)  # an edit handled after the deletion

    assert stored_text(store, first) == "" and store.messages.get_message("C1", first) is None
    assert cached(store, keys) == [VPN_AGAIN, OFFSITE]


def test_messages_past_the_cutoff_are_dropped_once_scanned_or_deleted(store: Store) -> None:
    scanned, unscanned, deleted, recent = (post(store, n * MINUTE, VPN, user=f"U{n}") for n in range(4))
    store.messages.mark_scanned([m for m in store.messages.unscanned_messages() if m.ts in (scanned, recent)])
    store.messages.delete_message(channel="C1", ts=deleted)

    assert store.messages.forget_messages_before(T0 + 3 * MINUTE) == 2
    assert [stored_text(store, t) for t in (scanned, unscanned, deleted, recent)] == [None, VPN, None, VPN]


def test_forgetting_messages_drops_the_vectors_no_kept_message_shares(
    store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    post(store, 0, VPN), post(store, 60, OFFSITE, user="U2"), post(store, 2 * DAY, OFFSITE, user="U3")
    found(store, embedder, settings)
    keys = {text: bytes(key) for text, key in store.conn.execute("SELECT text, vector_key FROM messages ORDER BY ts")}
    store.messages.mark_scanned(store.messages.unscanned_messages())

    assert store.messages.forget_messages_before(T0 + DAY) == 2
    assert cached(store, keys) == [OFFSITE]  # still the vector of the kept message with the same text


def test_only_new_messages_are_judged(store: Store, embedder: LocalEmbedder, settings: Settings) -> None:
    post(store, 0, VPN)
    post(store, 60, OFFSITE, user="U2")
    store.messages.mark_scanned(store.messages.unscanned_messages())
    assert find_duplicates(store, embedder, DupRules.from_settings(settings), to_plain=from_slack).examined == []
    again = post(store, 120, VPN_AGAIN, user="U3")  # new, compared with scanned ones
    findings = find_duplicates(store, embedder, DupRules.from_settings(settings), to_plain=from_slack)
    assert [m.ts for m in findings.examined] == [again]
    assert [(p.later.ts, p.earlier.ts) for p in findings.pairs] == [(again, ts(0))]


def test_an_edit_makes_a_message_new_again(store: Store, embedder: LocalEmbedder, settings: Settings) -> None:
    post(store, 0, VPN)
    later = post(store, 60, OFFSITE, user="U2")
    store.messages.mark_scanned(store.messages.unscanned_messages())
    store.messages.edit_message(channel="C1", ts=later, text=VPN_AGAIN)
    assert found(store, embedder, settings) == [(later, ts(0))]


def test_an_edit_after_a_scan_is_judged_by_its_new_text(
    store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    first = post(store, 0, VPN)
    later = post(store, 60, VPN_AGAIN, user="U2")
    assert found(store, embedder, settings) == [(later, first)]  # both prepared with these texts
    store.messages.mark_scanned(store.messages.unscanned_messages())
    store.messages.edit_message(channel="C1", ts=later, text=OFFSITE)
    assert found(store, embedder, settings) == []
    store.messages.mark_scanned(store.messages.unscanned_messages())
    store.messages.edit_message(channel="C1", ts=first, text=OFFSITE)
    store.messages.edit_message(channel="C1", ts=later, text=VPN)
    assert found(store, embedder, settings) == []  # the earlier one no longer asks about the VPN


class CountingEmbedder:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner, self.texts = inner, 0
        self.model_id, self.dim, self.batch_size = inner.model_id, inner.dim, inner.batch_size

    def embed(self, texts: list[str], truncate: bool = False) -> np.ndarray:
        self.texts += len(texts)
        return self.inner.embed(texts, truncate=truncate)


def test_a_scan_prepares_each_message_once(store: Store, embedder: LocalEmbedder, settings: Settings) -> None:
    counting = CountingEmbedder(embedder)
    post(store, 0, VPN)
    post(store, 60, OFFSITE, user="U2")
    post(store, 90, "thanks!", user="U3")  # not worth judging: prepared without a vector
    assert find_duplicates(store, counting, DupRules.from_settings(settings), to_plain=from_slack).pairs == []
    assert counting.texts == 2
    label = preparation_label(embedder, DupRules.from_settings(settings))
    assert store.messages.unprepared_messages(0, T0 + DAY, label) == []
    again = post(store, 120, VPN_AGAIN, user="U4")
    pairs = find_duplicates(store, counting, DupRules.from_settings(settings), to_plain=from_slack).pairs
    assert [(p.later.ts, p.earlier.ts) for p in pairs] == [(again, ts(0))]
    assert counting.texts == 3  # only the new message went through the model


def test_new_candidate_rules_prepare_messages_again(
    store: Store, embedder: LocalEmbedder, settings: Settings
) -> None:
    first = post(store, 0, "vpn password reset?")
    again = post(store, 60, "reset my vpn password", user="U2")
    assert found(store, embedder, settings) == []  # under 4 words: not judged
    assert found(store, embedder, settings, dup_min_words=3, dup_min_chars=10) == [(again, first)]


def test_a_vector_missing_from_the_cache_is_embedded_again(
    store: Store, embedder: LocalEmbedder, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    first = post(store, 0, VPN)
    assert found(store, embedder, settings) == []
    store.messages.mark_scanned(store.messages.unscanned_messages())
    with store.atomic():
        store.conn.execute("DELETE FROM embedding_cache")  # e.g. a cache cleared by hand
    again = post(store, 60, VPN_AGAIN, user="U2")
    assert found(store, embedder, settings) == [(again, first)]
    assert "missing from the embedding cache" in caplog.text
    assert found(store, embedder, settings) == [(again, first)]  # and cached again


@pytest.mark.sqlite_only("a file from before SQLite's migration m006; PostgreSQL's first schema has prepared messages")
def test_messages_stored_before_m006_are_prepared_by_the_next_scan(
    kb_db: Path, embedder: LocalEmbedder, settings: Settings
) -> None:
    from bot.store.sqlite import migrations

    path = kb_db
    label = preparation_label(embedder, DupRules.from_settings(settings))
    with SqliteStore(path, stop_before="m006_prepared_messages") as old:
        first = post(old, 0, VPN)
        old.messages.mark_scanned(old.messages.unscanned_messages())
    with open_store(path) as store:
        assert "m006_prepared_messages" in migrations.applied(store.conn)
        assert store.messages.unprepared_messages(0, T0 + DAY, label)  # nothing prepared yet
        again = post(store, 60, VPN_AGAIN, user="U2")
        assert found(store, embedder, settings) == [(again, first)]
        assert store.messages.unprepared_messages(0, T0 + DAY, label) == []


def test_marking_scanned_keeps_an_edit_that_came_meanwhile(store: Store) -> None:
    later = post(store, 0, OFFSITE)
    judged = store.messages.unscanned_messages()
    store.messages.edit_message(channel="C1", ts=later, text=VPN)  # arrives while the scan runs
    store.messages.mark_scanned(judged)
    assert [m.text for m in store.messages.unscanned_messages()] == [VPN]


def test_dup_channels_limit_the_scan(store: Store, embedder: LocalEmbedder, settings: Settings) -> None:
    post(store, 0, VPN, channel="C_OTHER")
    post(store, 60, VPN_AGAIN, user="U2")
    assert find_duplicates(store, embedder, DupRules.from_settings(settings), ["C1"], to_plain=from_slack).pairs == []
    assert len(find_duplicates(store, embedder, DupRules.from_settings(settings), to_plain=from_slack).pairs) == 1


# --- schedule and CLI -----------------------------------------------------------------


def test_the_trigger_is_the_interval_or_the_cron_line(tmp_path: Path) -> None:
    assert scan_trigger(make_settings(tmp_path)).interval.total_seconds() == 15 * 60
    cron = scan_trigger(make_settings(tmp_path, dup_scan_cron="*/10 9-18 * * mon-fri"))
    assert {f.name: str(f) for f in cron.fields}["hour"] == "9-18"
    with pytest.raises(SettingsError, match="DUP_SCAN_CRON"):
        scan_trigger(make_settings(tmp_path, dup_scan_cron="every ten minutes"))


def test_flagging_needs_a_bot_token(settings: Settings) -> None:
    result = CliRunner().invoke(cli, ["--env-file", "/nonexistent", "dupes", "scan", "--db", str(settings.db_path)])
    assert result.exit_code == 1
    assert "SLACK_BOT_TOKEN" in result.output


# --- layering -----------------------------------------------------------------------------

# The message → flag path, bottom up: each module may import only those before it, so it never climbs back up.
DUPES_LAYERS = ("rules", "normalise", "prepare", "judge", "match", "feedback", "flag", "scan", "evaluate")


def test_the_dupes_modules_import_only_the_layers_below_them() -> None:
    trees = modules()
    assert sorted(name for name in trees if name.startswith("bot.dupes.")) == sorted(
        f"bot.dupes.{layer}" for layer in DUPES_LAYERS
    )
    for i, layer in enumerate(DUPES_LAYERS):
        name = f"bot.dupes.{layer}"
        above = {f"bot.dupes.{later}" for later in DUPES_LAYERS[i + 1 :]}
        climbs = {m for m in imported(trees[name], name) if m in above or m.rpartition(".")[0] in above}
        assert climbs == set(), f"{name} imports {climbs}"
