"""Write benchmarks/splits/qm9-small-v1.txt from the qm9 split file (deterministic; no QM9
download needed): ``python -m benchmarks.data.make_qm9_small``."""
from __future__ import annotations

from benchmarks.qm9 import SMALL_SPLIT_FILE, SMALL_SPLIT_SHA256, write_small_split_file


def main() -> int:
    digest = write_small_split_file(SMALL_SPLIT_FILE)
    same = "matches" if digest == SMALL_SPLIT_SHA256 else f"DIFFERS from the pinned {SMALL_SPLIT_SHA256}"
    print(f"wrote {SMALL_SPLIT_FILE} sha256 {digest} ({same})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
