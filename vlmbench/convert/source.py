"""Where a converted checkpoint came from, in one line for logs, results and reports."""

from __future__ import annotations

SOURCE_KIND = "MMPT"


def describe(source: dict | None) -> str | None:
    """'converted from MMPT <file> (sha256 <12 hex>, fairseq step N, epoch E)'; None for other checkpoints."""
    if not source or source.get("kind") != SOURCE_KIND:
        return None
    parts = [f"sha256 {str(source.get('sha256', ''))[:12]}"]
    if source.get("fairseq_step") is not None:
        parts.append(f"fairseq step {source['fairseq_step']}")
    if source.get("fairseq_epoch") is not None:
        parts.append(f"epoch {source['fairseq_epoch']}")
    return f"converted from {SOURCE_KIND} {source.get('file')} ({', '.join(parts)})"
