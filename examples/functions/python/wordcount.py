"""`py-wordcount`: Orb's wordcount in Python, as a WASI 0.2 component.

Text in, JSON object of word counts out: words are runs of letters, digits
and apostrophes, lowercased; keys sorted, no spaces, no trailing newline,
the same bytes the Rust `wordcount` writes. How many words and distinct
words it saw goes to stderr (the call's log). Input that is not UTF-8 is
an error: a message on stderr and exit code 1.

Deterministic: no clock, no random numbers, and the output does not depend
on dict or set order (keys are sorted).

Built by scripts/guests with componentize-py:
    componentize-py -d wit -w function componentize wordcount -o py-wordcount.wasm
"""

import json
import sys

from wit_world import exports


def words(text):
    word = []
    for c in text:
        if c.isalnum() or c == "'":
            word.append(c)
        elif word:
            yield "".join(word)
            word = []
    if word:
        yield "".join(word)


def count(text):
    counts = {}
    for w in words(text):
        w = w.lower()
        counts[w] = counts.get(w, 0) + 1
    return counts


class Run(exports.Run):
    def run(self) -> None:
        data = sys.stdin.buffer.read()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            sys.stderr.write(f"input is not UTF-8: {e}\n")
            sys.stderr.flush()
            sys.exit(1)
        counts = count(text)
        sys.stderr.write(f"{sum(counts.values())} words, {len(counts)} distinct\n")
        sys.stderr.flush()
        out = json.dumps(counts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        sys.stdout.buffer.write(out.encode("utf-8"))
        sys.stdout.flush()
