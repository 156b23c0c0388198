""""Not the same question": people correct a duplicate flag, and the pair feeds the judge's next fit.

The flag carries a button (`not_same_button`); a click records the flagged
pair with both texts (`record_not_same`, kept by `MessageStore`) and edits the flag to say so
(`not_same_text`). `kb-bot dupes feedback --export` writes the pairs as JSON
lines for scripts/fit_dupe_judge.py's next training set.
"""

from __future__ import annotations

from bot.store import Feedback, MessageStore

NOT_SAME_ACTION = "dupe_not_same"


def not_same_button(later_channel: str, later_ts: str) -> dict[str, object]:
    """The actions block of a flag: its button names the flagged later message."""
    return {
        "type": "actions",
        "elements": [{
            "type": "button", "action_id": NOT_SAME_ACTION, "value": f"{later_channel} {later_ts}",
            "text": {"type": "plain_text", "text": "Not the same question"},
        }],
    }


def record_not_same(messages: MessageStore, button_value: str, user: str) -> Feedback | None:
    """Keep the pair flagged for the later message the button names; None if no such flag (or a bad value).

    A second click (anyone's) keeps the first report.
    """
    channel, _, ts = button_value.partition(" ")
    return messages.record_not_same(channel, ts, user)


def not_same_text(user: str) -> str:
    """What the flag says once someone has said it is wrong."""
    return f"<@{user}> says this is not the same question as the earlier one. Thanks: noted for the next fit."
