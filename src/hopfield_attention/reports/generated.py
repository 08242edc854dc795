"""Text that results write into documents: a block between two markers, regenerated from a results file.

    <!-- generated: <name> (from <source>; edit the generator, not this block) -->
    ...
    <!-- end generated: <name> -->

A verdict in the README or the docs is such a block: the pipeline that produces the results rewrites it, and a
test renders it again from the committed results file and compares, so committed text and results never drift.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..runs.atomic import atomic_file


def markers(name: str, source: str) -> tuple[str, str]:
    return (f"<!-- generated: {name} (from {source}; edit the generator, not this block) -->",
            f"<!-- end generated: {name} -->")  # fmt: skip


def pattern(name: str) -> re.Pattern:
    return re.compile(rf"<!-- generated: {re.escape(name)} \(.*?\) -->\n(.*?)<!-- end generated: {re.escape(name)} -->",
                      re.DOTALL)  # fmt: skip


def read_block(text: str, name: str) -> str:
    """The body of block `name` in `text`; ValueError if the document has no such block."""
    found = pattern(name).search(text)
    if found is None:
        raise ValueError(f"no generated block {name!r} (expected the markers of reports/generated.py)")
    return found.group(1)


def write_block(path: str | Path, name: str, source: str, body: str) -> None:
    """Replace block `name` of the document at `path` with `body` (the block must exist already)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    read_block(text, name)
    begin, end = markers(name, source)
    body = body if body.endswith("\n") else body + "\n"
    with atomic_file(path) as handle:
        handle.write(pattern(name).sub(lambda _: f"{begin}\n{body}{end}", text, count=1))
