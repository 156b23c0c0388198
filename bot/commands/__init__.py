"""The `kb-bot` command groups beside the core commands of `bot.cli`, one module per concern."""
