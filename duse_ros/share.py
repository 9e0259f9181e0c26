"""The package's data directories (config/, msg/, launch/) wherever duse_ros runs from: a source
checkout (`make setup` puts the working tree on the path), a colcon install (the ament share
directory), or a prefix install (`<prefix>/share/duse_ros`)."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE_NAME = "duse_ros"


def share_dirs() -> list[Path]:
    """Candidate roots, in order: the source tree this module was imported from, the ament share
    directory of the installed package, and `<interpreter prefix>/share/duse_ros`."""
    dirs = [Path(__file__).resolve().parents[1]]
    try:
        from ament_index_python.packages import get_package_share_directory

        dirs.append(Path(get_package_share_directory(PACKAGE_NAME)))
    # ImportError: no ament here; LookupError: package not indexed; OSError: AMENT_PREFIX_PATH unset.
    except (ImportError, LookupError, OSError):
        pass
    dirs.append(Path(sys.prefix) / "share" / PACKAGE_NAME)
    return dirs


def share_path(*parts: str) -> Path | None:
    """The first existing `<root>/<parts...>` among share_dirs(), or None."""
    for root in share_dirs():
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    return None
