"""kb-bot: a Slack bot that answers questions from a team's knowledge folder.

The library is usable without Slack::

    from bot import Store, index_folder, load_settings, make_embedder, search

    settings = load_settings()
    embedder = make_embedder(settings)
    with Store(settings.db_path) as store:
        index_folder(store, embedder, settings)
        for hit in search(store, embedder, "how do I get reimbursed for a taxi").hits:
            print(f"{hit.score:.2f} {hit.path} {hit.heading}")
"""

from bot.embeddings import Embedder, LocalEmbedder, OpenAIEmbedder, make_embedder
from bot.errors import KbError
from bot.indexer import IndexReport, index_folder
from bot.search import Hit, SearchResult, search
from bot.settings import Settings, load_settings
from bot.store import Store

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
    "search",
]
