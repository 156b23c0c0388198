"""Run the duplicate scan (and, with GAPS_REPORT_CHANNEL, the weekly gaps report) in the background of `kb-bot serve`.

APScheduler's BackgroundScheduler runs the scan on its own thread every
DUP_SCAN_MINUTES, or on DUP_SCAN_CRON when set, and once at start-up so
messages posted while the bot was down are caught up at once. max_instances=1
means a slow scan is never overlapped by the next one, and coalesce=True folds
runs missed meanwhile into one. A run that fails is logged by APScheduler and
the schedule goes on; the scan marks scanned only what it handled, so the next
run retries the rest. The gaps report (`bot.gaps.post_gaps_report`) runs on
GAPS_REPORT_CRON and posts only when a question no earlier post covered is in it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.chat import ChatPort
from bot.dupes.rules import DupRules
from bot.dupes.scan import check_action, scan_and_flag
from bot.embeddings import Embedder
from bot.errors import SettingsError
from bot.gaps import post_gaps_report
from bot.lock import leads
from bot.questions import prune
from bot.settings import Settings
from bot.store import open_configured_store

log = logging.getLogger(__name__)

JOB_ID = "dupes-scan"
GAPS_JOB_ID = "gaps-report"
RETENTION_JOB_ID = "question-retention"
GAPS_LEASE_SECONDS = 8 * 86400
# A scan lease lasts this many scan intervals (DUP_SCAN_MINUTES): a late run keeps it, a dead leader loses it.
LEASE_PERIODS = 1.5


def scan_trigger(settings: Settings) -> BaseTrigger:
    """DUP_SCAN_CRON (a five-field crontab line) when set, else every DUP_SCAN_MINUTES."""
    if settings.dup_scan_cron:
        try:
            return CronTrigger.from_crontab(settings.dup_scan_cron)
        except ValueError as exc:
            raise SettingsError(f"DUP_SCAN_CRON {settings.dup_scan_cron!r} is not a crontab line: {exc}") from None
    return IntervalTrigger(minutes=settings.dup_scan_minutes)


def scan_job(settings: Settings, embedder: Embedder, chat: ChatPort) -> Callable[[], None]:
    """One scheduled scan, with its own database connection (it runs on the scheduler's thread)."""
    rules = DupRules.from_settings(settings)

    def run() -> None:
        # Replicas sharing a database take turns by lease: the leader renews it every run, a dead one's runs out.
        if not leads(settings.db_path, JOB_ID, LEASE_PERIODS * settings.dup_scan_minutes * 60):
            log.info("dupes scan skipped: another replica leads it")
            return
        with open_configured_store(settings) as store:
            scan_and_flag(store, embedder, rules, chat)

    return run


def build_scheduler(settings: Settings, embedder: Embedder, chat: ChatPort) -> BackgroundScheduler:
    """The scheduler with the scan job, not started yet; the first run comes as soon as it starts."""
    check_action(DupRules.from_settings(settings))
    scheduler = BackgroundScheduler()
    scheduler.add_job(
        scan_job(settings, embedder, chat),
        scan_trigger(settings),
        id=JOB_ID,
        name="duplicate scan",
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,  # late is better than skipped: the scan catches up whatever it missed
        next_run_time=datetime.now(UTC),
    )
    return scheduler


def add_question_jobs(scheduler: BackgroundScheduler, settings: Settings, chat: ChatPort) -> None:
    """The question log's jobs: retention daily (and at start), the gaps report when GAPS_REPORT_CHANNEL is set."""
    scheduler.add_job(
        retention_job(settings), IntervalTrigger(hours=24), id=RETENTION_JOB_ID, name="question retention",
        max_instances=1, coalesce=True, next_run_time=datetime.now(UTC),
    )
    if settings.gaps_report_channel:
        add_gaps_report(scheduler, settings, chat)


def retention_job(settings: Settings) -> Callable[[], None]:
    """Daily, and at start: questions and votes past KB_QUESTIONS_DAYS / KB_FEEDBACK_DAYS go even when
    nobody asks anything (recording a question prunes too)."""

    def run() -> None:
        with open_configured_store(settings) as store:
            prune(store, settings)

    return run


def add_gaps_report(scheduler: BackgroundScheduler, settings: Settings, chat: ChatPort) -> None:
    """Post the knowledge-gaps report to GAPS_REPORT_CHANNEL on GAPS_REPORT_CRON (weekly by default)."""
    try:
        trigger = CronTrigger.from_crontab(settings.gaps_report_cron)
    except ValueError as exc:
        raise SettingsError(f"GAPS_REPORT_CRON {settings.gaps_report_cron!r} is not a crontab line: {exc}") from None

    def run() -> None:
        # Replicas sharing a database: one posts (its lease outlives a weekly run; a dead leader's runs out).
        if not leads(settings.db_path, GAPS_JOB_ID, GAPS_LEASE_SECONDS):
            return
        with open_configured_store(settings) as store:
            post_gaps_report(store, chat, settings.gaps_report_channel)

    scheduler.add_job(run, trigger, id=GAPS_JOB_ID, name="knowledge gaps report", max_instances=1, coalesce=True)


def start_scheduler(settings: Settings, embedder: Embedder, chat: ChatPort) -> BackgroundScheduler:
    """Start scanning in the background; the caller shuts the scheduler down on exit."""
    scheduler = build_scheduler(settings, embedder, chat)
    add_question_jobs(scheduler, settings, chat)
    scheduler.start()
    log.info("dupes scheduler started trigger=%s", scheduler.get_job(JOB_ID).trigger)
    return scheduler
