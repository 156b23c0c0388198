"""kb-bot: a Slack bot that answers questions from a team's knowledge folder.

The library is usable without Slack. `open_store` opens the database KB_DB
names (a SQLite file, or PostgreSQL); everything takes the `Store` it returns::

    from bot import index_folder, load_settings, make_embedder, open_store, search

    settings = load_settings()
    embedder = make_embedder(settings)
    with open_store(settings.db_path) as store:
        index_folder(store, embedder, settings)
        for hit in search(store, embedder, "how do I get reimbursed for a taxi").hits:
            print(f"{hit.score:.2f} {hit.path} {hit.heading}")
"""

from bot.embeddings import Embedder, LocalEmbedder, OpenAIEmbedder, make_embedder
from bot.errors import KbError
from bot.indexer import IndexReport, index_folder
from bot.search import Hit, SearchResult, search
from bot.settings import Settings, load_settings
from bot.store import Store, open_store

__all__ = [
    "Embedder",
    "Hit",
    "IndexReport",
    "KbError",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "SearchResult",
    "Settings",
    "Store",
    "index_folder",
    "load_settings",
    "make_embedder",
    "open_store",
    "search",
]
