"""The optional parts of the install (pyproject's extras) and the one error that names the missing part's fix.

`pip install fkd-track` tracks faces with ONNX files; .pt checkpoints, training, plots, quantising and Ray need extras.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from engines.errors import UserError

# The extra that installs each optional module (pyproject.toml's [project.optional-dependencies]).
EXTRA_OF = {"torch": "train", "onnx": "train", "onnxscript": "train", "matplotlib": "train", "ray": "cluster"}


class ExtraMissing(UserError):
    """An optional module a command needs is not installed (or cannot be imported)."""


def require(module: str, what: str, tip: str = "") -> ModuleType:
    """`module`, imported; ExtraMissing saying that `what` needs it and how to install it where it is missing.

    Called before a command reads or writes anything, so a light install fails at once with one line."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        missing = (err.name or "").split(".")[0]
        if missing and missing != module:  # installed, but one of its own dependencies is missing
            raise ExtraMissing(f"{what} needs {module}, which is installed but cannot be imported: "
                               f"{' '.join(str(err).split())}") from None
        more = f" ({tip})" if tip else ""
        raise ExtraMissing(f"{what} needs {module}, which is not installed: "
                           f"pip install 'fkd-track[{EXTRA_OF.get(module, 'train')}]'{more}") from None
