"""The optional parts of the install (pyproject's extras) and the one error that names the missing part's fix.

`pip install fkd-track` tracks faces with ONNX files; .pt checkpoints, training, plots, quantising and Ray need extras.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from engines.errors import UserError

# The extra that installs each optional module (pyproject.toml's [project.optional-dependencies]).
EXTRA_OF = {"torch": "train", "onnx": "train", "onnxscript": "train", "matplotlib": "train", "ray": "cluster"}


class ExtraMissing(UserError):
    """An optional module a command needs is not installed (or cannot be imported)."""


def require(module: str, what: str, tip: str = "") -> ModuleType:
    """`module`, imported; ExtraMissing saying that `what` needs it and how to install it where it is missing.

    Called before a command reads or writes anything, so a light install fails at once with one line."""
    extra = EXTRA_OF.get(module, "train")
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as err:  # OSError: e.g. a shared library of the package is missing
        missing = (getattr(err, "name", None) or "").split(".")[0]
        if missing == module or (not missing and not _installed(module)):
            more = f" ({tip})" if tip else ""
            raise ExtraMissing(f"{what} needs {module}, which is not installed: "
                               f"pip install 'fkd-track[{extra}]'{more}") from None
        raise ExtraMissing(f"{what} needs {module}, which is installed but cannot be imported "
                           f"({' '.join(str(err).split())}); reinstall it: pip install 'fkd-track[{extra}]'") from None


def _installed(module: str) -> bool:
    """Whether `module` can be found without importing it (a broken install is found; a missing one is not)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
