"""Gather a map's item outputs into one folder per item (the r_map() collector on Azure ML).

Standard library only: it runs inside the job's image, from its own small
code folder, as::

    python gather.py OUTPUT LABEL ITEM_PATH [OUTPUT LABEL ITEM_PATH]... --to OUTPUT TARGET...

Each ITEM_PATH (an item node's output, mounted by Azure ML) is copied to
``TARGET/LABEL`` of its OUTPUT. Labels are amlr's item labels (letters,
digits, ``_ . -``), so the command survives a shell.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
from typing import Dict, List, Sequence, Tuple

LABEL_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def parse(argv: Sequence[str]) -> Tuple[List[Tuple[str, str, str]], Dict[str, str]]:
    items: List[Tuple[str, str, str]] = []
    targets: Dict[str, str] = {}
    i = 0
    while i < len(argv):
        if argv[i] == "--to":
            if i + 2 >= len(argv):
                raise SystemExit("gather: --to needs OUTPUT TARGET")
            targets[argv[i + 1]] = argv[i + 2]
            i += 3
            continue
        if i + 2 >= len(argv):
            raise SystemExit(f"gather: expected OUTPUT LABEL PATH at {argv[i:]!r}")
        output, label, path = argv[i:i + 3]
        if not LABEL_RE.match(label):
            raise SystemExit(f"gather: item label {label!r} is not a safe folder name")
        items.append((output, label, path))
        i += 3
    return items, targets


def gather(items: Sequence[Tuple[str, str, str]], targets: Dict[str, str]) -> int:
    for output, label, path in items:
        if output not in targets:
            raise SystemExit(f"gather: no --to for output {output!r}")
        dest = os.path.join(targets[output], label)
        if os.path.exists(dest):
            shutil.rmtree(dest)
        if os.path.isdir(path):
            shutil.copytree(path, dest)
        else:
            os.makedirs(dest)
            shutil.copy2(path, dest)
        print(f"gathered {output}/{label}", flush=True)
    return 0


def main(argv: Sequence[str]) -> int:
    items, targets = parse(argv)
    for target in targets.values():
        os.makedirs(target, exist_ok=True)
    return gather(items, targets)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
