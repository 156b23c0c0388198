"""Reports for people: what an index run did, as the CLI prints it and `/ask reindex` replies it.

Its own module so that the CLI and the Slack app both use it without importing each other.
"""

from __future__ import annotations

from bot.indexer import IndexReport


def format_report(report: IndexReport) -> str:
    verb = "Would index" if report.dry_run else "Indexed"
    lines = [
        f"{verb} with {report.model}{' (new index built)' if report.rebuilt and not report.dry_run else ''}:",
        f"  files: {len(report.added)} added, {len(report.changed)} changed, "
        f"{report.unchanged} unchanged, {len(report.removed)} removed, {len(report.skipped)} skipped",
    ]
    for path, reason in sorted(report.skipped.items()):
        lines.append(f"    skipped {path}: {reason}")
    for path, note in sorted(report.notes.items()):
        lines.append(f"    note {path}: {note}")
    if report.unsupported:
        kinds = ", ".join(f"{n} {ext}" for ext, n in sorted(report.unsupported.items()))
        lines.append(f"    ignored unsupported types: {kinds}")
    chunks = f"{report.chunks} in the index, " if not report.dry_run else ""
    lines.append(
        f"  chunks: {chunks}{report.chunks_written} {'to write' if report.dry_run else 'written'}; "
        f"texts {'to embed' if report.dry_run else 'embedded'}: {report.texts_embedded}, "
        f"cache hits: {report.cache_hits}"
    )
    lines.append(f"  took {report.seconds:.1f} s")
    return "\n".join(lines)
