"""Build the embedded example task: choose the true next sentence of four, from the held-out corpus.

Why this task: a multiple-choice task the embedded model can be scored on offline, built only from
text the project may redistribute and the model never trained on (``pydocs-eval.txt``). Each
example is a sentence of a paragraph (the context), the sentence that follows it, and three
sentences drawn from other documents. Which sentences are drawn, and where the true one is placed,
depends only on a sha256 of the example's position, so the file is identical on every machine.

    python scripts/build_next_sentence_task.py --out invarlock_provider/embedded/pydocs-next-sentence.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import re
from pathlib import Path

CORPUS = Path(__file__).resolve().parent.parent / "invarlock_provider" / "embedded" / "pydocs-eval.txt"
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
MIN_CHARS, MAX_CHARS = 40, 160
CHOICES = 4


def paragraphs(text: str) -> list[list[str]]:
    """Sentences of each prose paragraph (headings, `` = Title = `` lines, are not prose)."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("= ") or line.endswith(" ="):
            continue
        found.append([s.strip() for s in SENTENCE.split(line) if s.strip()])
    return found


def usable(sentence: str) -> bool:
    return MIN_CHARS <= len(sentence) <= MAX_CHARS and sentence[-1] in ".!?" and "  " not in sentence


def digest(*parts: object) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest(), 16)


def build(text: str) -> list[dict[str, object]]:
    paras = paragraphs(text)
    pool = [(number, s) for number, sentences in enumerate(paras) for s in sentences if usable(s)]
    examples = []
    for number, sentences in enumerate(paras):
        for position, (context, following) in enumerate(itertools.pairwise(sentences)):
            if not (usable(context) and usable(following)):
                continue
            distractors: list[str] = []
            draw = 0
            while len(distractors) < CHOICES - 1:
                other_para, other = pool[digest(number, position, draw) % len(pool)]
                draw += 1
                if other_para != number and other not in distractors and other != following:
                    distractors.append(other)
            gold = digest("gold", number, position) % CHOICES
            choices = [*distractors[:gold], following, *distractors[gold:]]
            examples.append(
                {"id": f"pydocs-{number:05d}-{position:02d}", "context": context, "choices": choices, "gold": gold}
            )
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    examples = build(args.corpus.read_text(encoding="utf-8"))
    args.out.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in examples), encoding="utf-8")
    print(f"{len(examples)} examples -> {args.out}")


if __name__ == "__main__":
    main()
