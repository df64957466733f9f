"""Pre-trained artifacts shipped inside the package, loadable by name.

`fdrl-infer --engine digits` and `fdrl_runtime.load("digits")` take a bundled name where
a path is expected: a path that exists always wins, so a file named `digits` in the
current folder is that file. scripts/build_bundled.py makes them from the bundled presets
and writes `index.json` (file, digest, preset, quality against held-out data beside the
prior's figure); `fdrl-infer --list` prints it. The artifacts carry the same digest and
metadata checks as any other.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "bundled"
INDEX_NAME = "index.json"


def bundled_index() -> dict:
    """name -> its record in index.json ({} when none are installed)."""
    path = BUNDLED_DIR / INDEX_NAME
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8"))


def resolve_engine(name_or_path: str | os.PathLike) -> Path:
    """A path as given; a bare bundled name (no folder, no suffix, no such file here) as the
    bundled artifact's path."""
    path = Path(name_or_path)
    if path.exists() or path.suffix or len(path.parts) != 1:
        return path
    record = bundled_index().get(str(name_or_path))
    return BUNDLED_DIR / record["file"] if record else path


def listing() -> str:
    """One line per bundled artifact: name, sample shape, the flow, its quality figure."""
    index = bundled_index()
    if not index:
        return "no bundled artifacts in this install (python scripts/build_bundled.py makes them)"
    lines = []
    for name, r in sorted(index.items()):
        q = r["quality"]
        extra = f", {q['modes_covered']} of 25 modes" if "modes_covered" in q else ""
        lines.append(f"{name:<12} {r['file']:<18} {q['measure']}: {q['value']:.4g} (the prior: {q['prior']:.4g}{extra}); "
                     f"preset {r['preset']}, {r['samples_judged']} samples")
    return "\n".join(lines)
