"""README's "How the code is laid out" lists every module of the package and only paths that
exist: it is the map a newcomer reads, so it must match `git ls-files`."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _listed() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## How the code is laid out", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    return [line.split()[0] for line in block.strip().splitlines() if line.strip()]


def test_the_layout_section_matches_the_files_in_git():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    listed = _listed()
    for path in listed:
        if path.endswith("/"):
            assert any(t.startswith(path) for t in tracked), f"README lists {path}, which git does not track"
        else:
            assert path in tracked, f"README lists {path}, which git does not track"
    modules = {t for t in tracked if re.fullmatch(r"duse_ros/.*\.py", t) and not t.endswith("__init__.py")}
    assert len(modules) > 40, modules  # the scan found the package
    missing = sorted(modules - set(listed))
    assert not missing, f"README's layout does not mention {missing}"
