#!/usr/bin/env python3
"""Admin re-index: the same code path as `kb-bot index`, made for cron.

    scripts/reindex.py                  # incremental: only changed files cost anything
    scripts/reindex.py --full           # re-read every file into a fresh index, swapped in at the end
    scripts/reindex.py --dry-run        # say what would change, write nothing
    scripts/reindex.py --knowledge DIR --db FILE

A lock beside the database stops two re-indexes at once: the second prints
who holds it and exits 1. Exit codes: 0 done, 1 failed (message on stderr).

cron, every night at 02:30 (stdout is the summary):
    30 2 * * * cd /srv/kb-bot && .venv/bin/python scripts/reindex.py >> /var/log/kb-bot-reindex.log 2>&1
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bot.cli import index_cmd  # noqa: E402

if __name__ == "__main__":
    index_cmd.main(args=sys.argv[1:], prog_name="reindex.py", obj={"env_file": ".env"})
