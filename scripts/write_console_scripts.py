"""Write setup.py's console scripts (duse-make-bag, duse-eval-bag, duse-fetch-weights, ...) into a
venv's bin/ as small wrappers: `make setup` puts the working tree on the venv's path with a .pth
file instead of `pip install -e` (which would shadow the generated duse_ros.msg), so pip never
writes them. Each wrapper runs its entry point with the venv's interpreter.

    python scripts/write_console_scripts.py .venv/bin
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def console_scripts(setup_py: Path = ROOT / "setup.py") -> dict[str, str]:
    """name -> "module:function", as setup.py's entry_points lists them."""
    for node in ast.walk(ast.parse(setup_py.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entries = ast.literal_eval(node.value)["console_scripts"]
            return {name.strip(): target.strip() for name, target in (e.split("=", 1) for e in entries)}
    raise SystemExit(f"{setup_py}: no entry_points")


def write(bin_dir: Path, python: str) -> list[Path]:
    written = []
    for name, target in console_scripts().items():
        module, function = target.split(":")
        path = bin_dir / name
        path.write_text(
            f"#!{python}\n# Written by scripts/write_console_scripts.py (make setup): setup.py's {name}.\n"
            f"import sys\n\nfrom {module} import {function}\n\nif __name__ == '__main__':\n    sys.exit({function}())\n"
        )
        path.chmod(0o755)
        written.append(path)
    return written


if __name__ == "__main__":
    bin_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sys.executable).parent
    # absolute, not resolved: the venv's python is a link, and following it would leave the venv
    write(bin_dir, os.path.abspath(bin_dir / "python"))
