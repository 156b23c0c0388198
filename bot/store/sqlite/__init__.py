"""The SQLite backend: connections (db), schema (migrations), the Store, the message store, FTS5 (fts)."""
