"""The Slack side of kb-bot: `app` routes Slack requests, `format` builds the messages."""
