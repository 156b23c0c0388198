"""Embedder backends by name, as `llm` registers its models: `EMBED_BACKEND` picks one.

A backend module registers a factory (`Settings` -> `Embedder`) with
`@register_embedder("name")`; `make_embedder` builds the one the settings name.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.embeddings.base import Embedder
from bot.errors import SettingsError
from bot.redact import install_log_redaction
from bot.settings import Settings

EmbedderFactory = Callable[[Settings], Embedder]

_FACTORIES: dict[str, EmbedderFactory] = {}


def register_embedder(name: str) -> Callable[[EmbedderFactory], EmbedderFactory]:
    """Register the decorated factory as backend `name` (a second registration of a name is a bug)."""

    def register(factory: EmbedderFactory) -> EmbedderFactory:
        if name in _FACTORIES:
            raise ValueError(f"embedder backend {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return register


def embedder_backends() -> tuple[str, ...]:
    """The registered backend names, sorted."""
    return tuple(sorted(_FACTORIES))


def make_embedder(settings: Settings) -> Embedder:
    """The embedder the settings ask for (and, for the process, log records without URL credentials)."""
    install_log_redaction()
    factory = _FACTORIES.get(settings.embed_backend)
    if factory is None:
        raise SettingsError(
            f"EMBED_BACKEND {settings.embed_backend!r} is not a registered backend: "
            f"use one of {', '.join(embedder_backends())}"
        )
    return factory(settings)
