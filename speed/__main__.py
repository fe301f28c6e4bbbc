"""``python -m speed gpu``: the GPU timing table (:mod:`speed.gpu`). The other speed scripts run
as ``python -m speed.<name>``."""
from __future__ import annotations

import sys

COMMANDS = {"gpu": "speed.gpu"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m speed {{{','.join(COMMANDS)}}} [options]  (other scripts: python -m speed.<name>)",
              file=sys.stderr)
        return 2
    import importlib

    return importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
