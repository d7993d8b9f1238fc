"""Run ``spigot data ...`` without the ``spigot`` command.

* ``python -m spigot.data.download download ewt --dir DATA`` (``data`` may be omitted);
* ``python src/spigot/data/download download ewt --dir DATA``: this directory run as a script. It
  is then loaded as a stand-alone package (its modules import each other relatively), so neither
  ``spigot`` nor torch is imported and only the standard library is needed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable


def _main() -> Callable[..., int]:
    if __package__:
        from .cli import main

        return main
    import importlib.util
    from pathlib import Path

    here = Path(__file__).resolve().parent
    name = "_spigot_data_download"
    spec = importlib.util.spec_from_file_location(
        name, here / "__init__.py", submodule_search_locations=[str(here)]
    )
    assert spec is not None and spec.loader is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package.main


if __name__ == "__main__":  # pragma: no cover
    sys.exit(_main()())
