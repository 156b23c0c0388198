"""Preparing messages for the scan: normalised and embedded once, each keeping its vector's cache key.

Messages are prepared as they arrive (`receive`, from the platform's message
events) and by the scan for whatever it finds unprepared, so a scan rarely
waits for the model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from bot.cache import embed_many
from bot.chat import Deleted, Edited, MessageChange, ToPlain
from bot.dupes.normalise import candidate_text
from bot.dupes.rules import DupRules
from bot.embeddings import Embedder
from bot.store import Message, Store, cache_key

log = logging.getLogger(__name__)


def preparation_label(embedder: Embedder, rules: DupRules) -> str:
    """The label a prepared message keeps (its `prepared_as` column): the model and the candidate rules.

    A message prepared under another label (another model, other DUP_MIN_*) is prepared again.
    """
    return f"{embedder.model_id} words>={rules.min_words} chars>={rules.min_chars}"


# Messages normalised, embedded and recorded at a time: memory stays flat on a
# first scan of a long backfill.
PREPARE_BATCH = 5000


def prepare_messages(
    store: Store, embedder: Embedder, rules: DupRules, messages: Iterable[Message], *, to_plain: ToPlain
) -> None:
    """Normalise and embed messages for the scan, once: each keeps its vector's cache key.

    Run by the scan for whatever it finds unprepared, and by the Slack app as
    messages arrive, so a scan rarely waits for the model. Batches of
    PREPARE_BATCH keep memory flat on a first scan of a long backfill.
    """
    messages = list(messages)
    label = preparation_label(embedder, rules)
    for start in range(0, len(messages), PREPARE_BATCH):
        batch = messages[start : start + PREPARE_BATCH]
        texts = [candidate_text(m.text, rules, to_plain) for m in batch]
        # a long message is judged by its opening (the model's window): where a question usually is
        embed_many(embedder, store, [t for t in texts if t is not None], truncate=True)
        keys = [cache_key(embedder.model_id, t) if t is not None else None for t in texts]
        store.messages.set_prepared(zip(batch, keys), label)


def receive(store: Store, embedder: Embedder, rules: DupRules, change: MessageChange, *, to_plain: ToPlain) -> None:
    """Apply a message event: a post is kept, an edit replaces the text, a deletion hides the message.

    A new text is prepared at once, so a scan rarely waits for the model; best
    effort: the message is stored already, and a scan prepares whatever this missed.
    """
    if isinstance(change, Deleted):
        store.messages.delete_message(channel=change.channel, ts=change.ts)
        return
    if isinstance(change, Edited):
        store.messages.edit_message(channel=change.channel, ts=change.ts, text=change.text)
        channel, ts = change.channel, change.ts
    else:
        store.messages.record_messages([change.message])
        channel, ts = change.message.channel, change.message.ts
    message = store.messages.get_message(channel, ts)
    if message is None:
        return
    try:
        prepare_messages(store, embedder, rules, [message], to_plain=to_plain)
    except Exception as exc:  # noqa: BLE001 - e.g. the embeddings API down: the scan retries
        log.warning("dupes: preparing a message on arrival failed (%s); the next scan will", type(exc).__name__)
