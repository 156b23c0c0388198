"""Where kb-bot keeps documents, chunks, vectors, the embedding cache and the bot's state.

`bot.store.sqlite` is the one backend today: one SQLite file with sqlite-vec
and FTS5. Everything outside this package speaks to the names below, never SQL.
"""

from bot.store.sqlite.store import ChunkRow, DocumentRecord, Generation, Store, cache_key

__all__ = ["ChunkRow", "DocumentRecord", "Generation", "Store", "cache_key"]
