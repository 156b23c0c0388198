"""`kb-bot serve`: run the Slack app over Socket Mode or HTTP.

Socket Mode (SLACK_APP_TOKEN set) needs no public URL; otherwise waitress
serves POST /slack/events (commands, events, interactivity). Both serve
GET /healthz on the port, for Docker and load balancers.

The listeners and the background scan share one `bot.services.Services`,
whose chat is a `SlackChat` over the same Web API client as the Bolt app.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

import waitress
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.http_retry import default_retry_handlers
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from waitress.server import BaseWSGIServer

from bot.embeddings import make_embedder
from bot.errors import KbError, SettingsError
from bot.services import Services
from bot.settings import Settings
from bot.slack.app import build_app
from bot.slack.chat import SlackChat
from bot.slack.gate import MAX_BODY_BYTES, guarded
from bot.vector_index import in_memory

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"
HTTP_THREADS = 8  # waitress threads only verify and ack; the work runs on Bolt's pool
RATE_LIMIT_RETRIES = 3  # a 429 is retried after its Retry-After, this many times
# Their DEBUG lines carry request and message bodies (questions, answers, response_urls): kept at INFO at most.
BODY_LOGGERS = ("slack_bolt", "slack_sdk", "waitress")

BOT_TOKEN_HELP = (
    "SLACK_BOT_TOKEN is not set: create the app from slack/manifest.yml, install it, "
    "copy the Bot User OAuth Token (xoxb-…) from OAuth & Permissions"
)
SIGNING_SECRET_HELP = (
    "SLACK_SIGNING_SECRET is not set: copy the Signing Secret from your app's Basic Information → "
    "App Credentials (or set SLACK_APP_TOKEN to use Socket Mode, which needs no public URL)"
)
APP_TOKEN_HELP = (
    "SLACK_APP_TOKEN must be an app-level token (xapp-…): Basic Information → App-Level Tokens, "
    "with the connections:write scope, and Socket Mode enabled"
)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_web_client(settings: Settings) -> WebClient:
    """The Web API client: SLACK_API_URL as base, 429s retried after Retry-After."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        retry_handlers=[*default_retry_handlers(), RateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)],
    )


def check_tokens(settings: Settings) -> None:
    """Fail before loading anything when a token the chosen mode needs is missing."""
    if not settings.slack_bot_token:
        raise SettingsError(BOT_TOKEN_HELP)
    if not settings.slack_bot_token.startswith("xoxb-"):
        raise SettingsError("SLACK_BOT_TOKEN must be the Bot User OAuth Token, which starts with xoxb-")
    if settings.slack_app_token:
        if not settings.slack_app_token.startswith("xapp-"):
            raise SettingsError(APP_TOKEN_HELP)
    elif not settings.slack_signing_secret:
        raise SettingsError(SIGNING_SECRET_HELP)


def create_app(services: Services, client: WebClient) -> App:
    """The Bolt app over `client`; Bolt checks the bot token with auth.test here."""
    try:
        return build_app(services, client)
    except BoltError:
        raise SettingsError(
            "Slack rejected SLACK_BOT_TOKEN (auth.test failed): copy the Bot User OAuth Token (xoxb-…) "
            "again from OAuth & Permissions, and reinstall the app if it was revoked"
        ) from None
    except OSError as exc:
        raise KbError(f"cannot reach the Slack API at {services.settings.slack_api_url}: {exc}") from None


def _not_found(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
    return [b"not found\n"]


def wsgi_app(app: App | None, signing_secret: str = "", healthy: Callable[[], bool] = lambda: True) -> WSGIApp:
    """POST /slack/events goes to Bolt (when `app` is given) once `bot.slack.gate` lets it; GET /healthz
    answers load balancers (503 when `healthy()` is false)."""
    slack = guarded(SlackRequestHandler(app, path=EVENTS_PATH), EVENTS_PATH, signing_secret) if app else _not_found

    def route(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            if not healthy():
                start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
                return [b"database file deleted or replaced: restart kb-bot\n"]
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        return slack(environ, start_response)

    return route


def http_server(
    app: App | None, host: str, port: int, signing_secret: str = "", healthy: Callable[[], bool] = lambda: True
) -> BaseWSGIServer:
    """A waitress server bound to host:port (port 0 picks a free one); `run()` serves.

    Without an app it serves only GET /healthz: Socket Mode's health check.
    Requests larger than MAX_BODY_BYTES are refused (413) before their body is read.
    """
    return waitress.create_server(
        wsgi_app(app, signing_secret, healthy), host=host, port=port, threads=HTTP_THREADS, ident="kb-bot",
        max_request_body_size=MAX_BODY_BYTES + 1,  # waitress refuses a length >= its limit
    )


def socket_mode_handler(app: App, settings: Settings) -> SocketModeHandler:
    """Socket Mode: Slack's WebSocket, opened with the app-level token (apps.connections.open)."""
    return SocketModeHandler(app, settings.slack_app_token)


def set_log_level(level: str) -> None:
    """LOG_LEVEL for kb-bot's own logs; the libraries that would log bodies never go below INFO."""
    logging.getLogger().setLevel(level)
    for name in BODY_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.INFO, logging.getLevelName(level)))


def serve(settings: Settings, host: str = "0.0.0.0") -> None:
    """Run until interrupted: Socket Mode when SLACK_APP_TOKEN is set, else HTTP on settings.port."""
    check_tokens(settings)
    set_log_level(settings.log_level)
    # SIGTERM (docker stop, systemd) unwinds like Ctrl+C, so background jobs and the database close cleanly
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    client = make_web_client(settings)
    services = Services(settings, make_embedder(settings), SlackChat(client))  # the embedder loads once
    try:
        app = create_app(services, client)
        store = services.store()
        stats = store.stats()
        log.info("answering from %s: %s documents, %s chunks, model %s",
                 settings.db_path, stats["documents"], stats["chunks"], stats["model"])
        if not stats["chunks"]:
            log.warning("the index is empty: run `kb-bot index`, or `%s reindex` as an admin", settings.ask_command)
        gen = store.active_generation()
        if gen:  # load the fast-search copy now rather than on the first question
            in_memory(store, gen)
        services.start_background_jobs()
        if settings.slack_app_token:
            health = http_server(None, host, settings.port, healthy=services.healthy)
            threading.Thread(target=health.run, name="healthz", daemon=True).start()
            log.info("connecting to Slack in Socket Mode (GET /healthz on port %s)", health.effective_port)
            socket_mode_handler(app, settings).start()
        else:
            server = http_server(app, host, settings.port, settings.slack_signing_secret, services.healthy)
            log.info("listening on http://%s:%s%s", server.effective_host, server.effective_port, EVENTS_PATH)
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        services.close()
        log.info("stopped")
