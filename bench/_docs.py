"""Writing a benchmark's results into docs/benchmarks.md between its markers."""

from __future__ import annotations

from pathlib import Path


def write_block(path: Path | str, begin: str, end: str, block: str, *, heading: str | None = None) -> None:
    """Put ``begin``, ``block`` and ``end`` (one per line) in place of the text between the
    markers of ``path``, markers included; append them (after ``heading``) when the markers are
    missing."""
    path = Path(path)
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    section = f"{begin}\n{block}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + (f"{heading}\n\n" if heading else "") + section + "\n"
    path.write_text(text, encoding="utf-8")
