"""Build the embedded English corpus from the Python 3.11 documentation sources.

Why this corpus: the embedded default must run offline on any machine, so its text has to be
something the project may lawfully redistribute. The Python documentation is English prose
written by people, licensed under the PSF License Agreement (which permits redistribution with
the notice kept), and Debian ships its reStructuredText sources in ``python3.11-doc``.

Only prose survives: code samples, directives, tables and markup are dropped, inline roles are
reduced to their text. Documents are assigned to train / eval deterministically by a hash of their
path, so the eval text is never seen in training and the split is identical on every machine.

    apt-get install python3.11-doc
    python scripts/build_corpus.py --out build/corpus
"""

from __future__ import annotations

import argparse
import hashlib
import re
from pathlib import Path

DEFAULT_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
SECTIONS = ("tutorial", "library", "howto", "faq", "reference", "whatsnew", "glossary.rst.txt")
EVAL_PERCENT = 15

_ROLE = re.compile(r":[a-zA-Z:+-]+:`!?~?([^`<]*?)(?:\s*<[^>]*>)?`")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`_{1,2}")
_LITERAL = re.compile(r"``([^`]+)``")
_EMPHASIS = re.compile(r"\*\*?([^*\s][^*]*?)\*\*?")
_REFERENCE = re.compile(r"`([^`]+)`_{0,2}")
_HEADING_RULE = re.compile(r"^([=\-~^\"'`#*+.:_])\1{2,}\s*$")
_TABLE_RULE = re.compile(r"^\s*[+=][-=+ ]+$")


def inline_text(line: str) -> str:
    line = _ROLE.sub(r"\1", line)
    line = _LINK.sub(r"\1", line)
    line = _LITERAL.sub(r"\1", line)
    line = _EMPHASIS.sub(r"\1", line)
    line = _REFERENCE.sub(r"\1", line)
    return re.sub(r"\s+", " ", line.replace("\\ ", "")).strip()


def prose_paragraphs(source: str) -> list[str]:
    """Return the prose paragraphs of one reST document, headings as ' = Title = ' lines."""
    lines = source.splitlines()
    paragraphs: list[str] = []
    current: list[str] = []
    skip_indent: int | None = None

    def flush() -> None:
        text = inline_text(" ".join(current))
        current.clear()
        if len(text) >= 40 and sum(ch.isalpha() for ch in text) > 0.6 * len(text):
            paragraphs.append(text)

    for index, raw in enumerate(lines):
        indent = len(raw) - len(raw.lstrip())
        stripped = raw.strip()
        if skip_indent is not None:
            if stripped and indent <= skip_indent:
                skip_indent = None
            else:
                continue
        if not stripped:
            flush()
            continue
        if _HEADING_RULE.match(stripped) or _TABLE_RULE.match(raw) or stripped.startswith("|"):
            flush()
            continue
        next_line = lines[index + 1].strip() if index + 1 < len(lines) else ""
        if _HEADING_RULE.match(next_line) and len(next_line) >= len(stripped) - 2:
            flush()
            title = inline_text(stripped)
            if title:
                paragraphs.append(f" = {title} = ")
            continue
        if stripped.startswith(".."):
            flush()
            skip_indent = indent
            continue
        if stripped.startswith((">>>", "...", "$ ")):
            flush()
            continue
        if indent > 0 and not current and not stripped[0].isalpha():
            continue
        current.append(stripped.removeprefix("* ").removeprefix("- "))
        if stripped.endswith("::"):
            current[-1] = stripped[:-1] if stripped != "::" else ""
            flush()
            skip_indent = indent
    flush()
    return paragraphs


def split_of(relative_path: str) -> str:
    digest = hashlib.sha256(relative_path.encode()).digest()
    return "eval" if digest[0] * 100 // 256 < EVAL_PERCENT else "train"


def build(sources: Path, out: Path) -> dict[str, int]:
    documents: dict[str, list[str]] = {"train": [], "eval": []}
    for section in SECTIONS:
        root = sources / section
        files = [root] if root.is_file() else sorted(root.rglob("*.rst.txt"))
        for path in files:
            relative = path.relative_to(sources).as_posix()
            paragraphs = prose_paragraphs(path.read_text(encoding="utf-8"))
            if sum(1 for p in paragraphs if not p.startswith(" = ")) >= 3:
                documents[split_of(relative)].append("\n".join(paragraphs))
    out.mkdir(parents=True, exist_ok=True)
    sizes = {}
    for split, docs in documents.items():
        text = "\n\n".join(docs) + "\n"
        target = out / f"pydocs-{split}.txt"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(target)
        sizes[split] = len(text.encode())
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=Path, default=DEFAULT_SOURCES)
    parser.add_argument("--out", type=Path, default=Path("build/corpus"))
    args = parser.parse_args()
    if not args.sources.is_dir():
        raise SystemExit(f"error: {args.sources} not found; install Debian's python3.11-doc")
    for split, size in build(args.sources, args.out).items():
        print(f"{split}: {size:,} bytes -> {args.out / f'pydocs-{split}.txt'}")


if __name__ == "__main__":
    main()
