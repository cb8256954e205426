"""Each notebook's budget (``../shared/STYLE.md`` rule 9), counted and checked.

    python tools/budget.py [notebooks/NN_*.ipynb ...]

Prose is every markdown cell before ``## Solutions``. Words are the runs of letters, digits and
apostrophes in it, code spans and formulas included (``label_instances`` is two); a decimal
number is a number with a decimal point (0.42, 3.5) outside code spans, formulas and links. Prints one line per notebook and each breach;
exits 1 if any notebook breaks its budget.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

MAX_WORDS, MAX_CELL_WORDS, MAX_CODE_LINES, MAX_DECIMALS = 3000, 250, 30, 15
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.S)
_LINK = re.compile(r"\]\([^)]*\)")
_WORD = re.compile(r"[A-Za-z0-9']+")
_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.]*\w)")


def prose(text: str) -> str:
    """A markdown cell's text without code spans, formulas and link targets."""
    return _LINK.sub("]", _MATH.sub(" ", _CODE.sub(" ", text)))


def measure(path: Path) -> dict:
    """``{"words", "cells", "big_cells", "long_code", "decimals"}`` of one notebook."""
    cells = json.loads(path.read_text())["cells"]
    words, big, long_code, decimals = 0, [], [], []
    for k, cell in enumerate(cells):
        text = "".join(cell["source"])
        if cell["cell_type"] == "markdown":
            if text.lstrip().startswith("## Solutions"):
                break
            plain = prose(text)
            n = len(_WORD.findall(text))
            words += n
            if n > MAX_CELL_WORDS:
                big.append((k, n))
            decimals += _DECIMAL.findall(plain)
        elif cell["cell_type"] == "code" and len(text.splitlines()) > MAX_CODE_LINES:
            long_code.append((k, len(text.splitlines())))
    return {"words": words, "cells": len(cells), "big_cells": big, "long_code": long_code,
            "decimals": decimals}


def breaches(m: dict) -> list[str]:
    """What breaks the budget, one line each (empty when within it)."""
    out = []
    if m["words"] > MAX_WORDS:
        out.append(f"{m['words']} words of prose (at most {MAX_WORDS})")
    out += [f"markdown cell {k}: {n} words (at most {MAX_CELL_WORDS})" for k, n in m["big_cells"]]
    out += [f"code cell {k}: {n} lines (at most {MAX_CODE_LINES})" for k, n in m["long_code"]]
    if len(m["decimals"]) > MAX_DECIMALS:
        out.append(f"{len(m['decimals'])} decimal numbers in prose (at most {MAX_DECIMALS}): "
                   + ", ".join(m["decimals"]))
    return out


def main(paths: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    notebooks = [Path(p) for p in paths] or sorted((root / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    failed = False
    for path in notebooks:
        m = measure(path)
        problems = breaches(m)
        failed |= bool(problems)
        print(f"{path.name}: {m['words']} words, {m['cells']} cells, "
              f"{len(m['decimals'])} decimals in prose" + ("" if problems else ": within budget"))
        for line in problems:
            print(f"  {line}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
