"""The layering rule: engines/ is the floor and imports nothing from tracker/ or train/ (lazily neither).

Read from the source with `ast`, so an import inside a function counts too.
"""

from __future__ import annotations

import ast
from pathlib import Path

ENGINES = Path(__file__).resolve().parent.parent / "engines"


def imported_modules(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
    return out


def test_engines_import_nothing_from_above():
    files = sorted(ENGINES.glob("*.py"))
    assert len(files) > 10  # the package is where this test expects it
    above = {f.name: sorted(m for m in imported_modules(f) if m.split(".")[0] in ("tracker", "train"))
             for f in files}
    assert {name: mods for name, mods in above.items() if mods} == {}


def test_the_check_sees_lazy_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from tracker.crop import crop_face\n    import train.fit\n")
    assert imported_modules(probe) == {"tracker.crop", "train.fit"}
