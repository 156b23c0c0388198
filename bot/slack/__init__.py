"""The Slack side of kb-bot: `app` and `listeners` route requests, `format` builds messages, `chat` serves the scan."""
