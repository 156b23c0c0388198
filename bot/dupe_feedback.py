""""Not the same question": people correct a duplicate flag, and the pair feeds the judge's next fit.

The flag carries a button (`not_same_button`); a click records the flagged
pair with both texts (`record_not_same`) and edits the flag to say so
(`not_same_text`). `kb-bot dupes feedback --export` writes the pairs as JSON
lines for scripts/fit_dupe_judge.py's next training set.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.db import transaction
from bot.store import Store

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


@dataclass(frozen=True)
class Feedback:
    later_channel: str
    later_ts: str
    earlier_channel: str
    earlier_ts: str
    later_text: str
    earlier_text: str
    score: float
    reported_by: str
    reported_at: float

    def as_dict(self) -> dict[str, object]:
        """One training row: the pair, labelled not the same question."""
        return {
            "later": {"channel": self.later_channel, "ts": self.later_ts, "text": self.later_text},
            "earlier": {"channel": self.earlier_channel, "ts": self.earlier_ts, "text": self.earlier_text},
            "score": round(self.score, 4), "same": False,
            "reported_by": self.reported_by, "reported_at": self.reported_at,
        }


_COLUMNS = ("later_channel, later_ts, earlier_channel, earlier_ts, later_text, earlier_text, score, "
            "reported_by, reported_at")


def record_not_same(store: Store, button_value: str, user: str) -> Feedback | None:
    """Keep the pair flagged for the later message the button names; None if no such flag (or a bad value).

    A second click (anyone's) keeps the first report.
    """
    channel, _, ts = button_value.partition(" ")
    with transaction(store.conn):
        store.conn.execute(
            f"INSERT OR IGNORE INTO dupe_feedback ({_COLUMNS}) "
            "SELECT f.later_channel, f.later_ts, f.earlier_channel, f.earlier_ts, l.text, e.text, f.score, ?, ? "
            "FROM flagged_pairs f JOIN messages l ON l.channel = f.later_channel AND l.ts = f.later_ts "
            "JOIN messages e ON e.channel = f.earlier_channel AND e.ts = f.earlier_ts "
            "WHERE f.later_channel = ? AND f.later_ts = ?",
            (user, time.time(), channel, ts),
        )
    row = store.conn.execute(
        f"SELECT {_COLUMNS} FROM dupe_feedback WHERE later_channel = ? AND later_ts = ?", (channel, ts)
    ).fetchone()
    return Feedback(*row) if row else None


def all_feedback(store: Store) -> list[Feedback]:
    """Every reported pair, oldest report first."""
    return [Feedback(*row) for row in
            store.conn.execute(f"SELECT {_COLUMNS} FROM dupe_feedback ORDER BY reported_at, later_ts")]


def not_same_text(user: str) -> str:
    """What the flag says once someone has said it is wrong."""
    return f"<@{user}> says this is not the same question as the earlier one. Thanks: noted for the next fit."
