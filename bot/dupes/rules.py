"""`DupRules`: the DUP_* settings the duplicate scan follows, so its code takes them and not all of `Settings`."""

from __future__ import annotations

from dataclasses import dataclass

from bot.settings import Settings

DAY = 86400.0


@dataclass(frozen=True)
class DupRules:
    """What counts as a repeat, where the scan looks, and what it does with one (README, Duplicate questions)."""

    threshold: float  # DUP_THRESHOLD: the similarity a candidate earlier message needs
    candidates: int  # DUP_CANDIDATES: earlier messages per new one the judge chooses from
    window_days: int  # DUP_WINDOW_DAYS: how far back a new message is compared
    same_author_minutes: int  # DUP_SAME_AUTHOR_MINUTES: an author's re-post within this is no repeat
    min_words: int  # DUP_MIN_WORDS / DUP_MIN_CHARS: shorter messages are not judged
    min_chars: int
    action: str  # DUP_ACTION: thread, digest or both
    report_channel: str  # DUP_REPORT_CHANNEL: where a digest goes
    channels: tuple[str, ...]  # DUP_CHANNELS: the channels watched (empty: every public one the bot is in)
    allow_private: bool  # DUP_ALLOW_PRIVATE: private channels in DUP_CHANNELS are watched too
    scan_minutes: float  # DUP_SCAN_MINUTES: how often a scan runs (what an unfinished flag is measured against)

    @classmethod
    def from_settings(cls, settings: Settings) -> DupRules:
        return cls(
            threshold=settings.dup_threshold, candidates=settings.dup_candidates,
            window_days=settings.dup_window_days, same_author_minutes=settings.dup_same_author_minutes,
            min_words=settings.dup_min_words, min_chars=settings.dup_min_chars,
            action=settings.dup_action, report_channel=settings.dup_report_channel,
            channels=settings.dup_channels, allow_private=settings.dup_allow_private,
            scan_minutes=settings.dup_scan_minutes,
        )

    @property
    def window_seconds(self) -> float:
        return self.window_days * DAY
