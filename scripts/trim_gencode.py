"""Make mamba-ssm's setup.py compile for one GPU architecture: `trim_gencode.py SETUP_PY 87`.

setup.py appends "-gencode" / "arch=compute_XX,code=sm_XX" pairs to `cc_flag`, some inside
`if` blocks on the nvcc version. The first pair becomes this card's architecture; every other
pair's two lines become `pass`, so the blocks stay valid Python. Exits non-zero, naming the
file, when it finds no pair (a new setup.py layout: trim it by hand).
"""

from __future__ import annotations

import re
import sys

PAIR = re.compile(r'^(\s*)cc_flag\.append\("arch=compute_\w+,code=sm_\w+"\)\s*$')
GENCODE = re.compile(r'^\s*cc_flag\.append\("-gencode"\)\s*$')


def trim(text: str, arch: str) -> str:
    if not re.fullmatch(r"\d{2,3}[af]?", arch):
        raise ValueError(f"architecture {arch!r}: expected digits such as 87 or 90")
    lines = text.split("\n")
    kept = False
    for i, line in enumerate(lines):
        match = PAIR.match(line)
        if not match or i == 0 or not GENCODE.match(lines[i - 1]):
            continue
        indent = match.group(1)
        if kept:
            lines[i - 1] = lines[i] = f"{indent}pass"
        else:
            lines[i] = f'{indent}cc_flag.append("arch=compute_{arch},code=sm_{arch}")'
            kept = True
    if not kept:
        raise ValueError("no -gencode/arch pair found")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: trim_gencode.py SETUP_PY ARCH", file=sys.stderr)
        return 2
    path, arch = argv
    try:
        with open(path) as f:
            text = trim(f.read(), arch)
    except (OSError, ValueError) as exc:
        print(f"trim_gencode.py: {path}: {exc}", file=sys.stderr)
        return 1
    with open(path, "w") as f:
        f.write(text)
    print(f"{path}: compiles for sm_{arch} only")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
