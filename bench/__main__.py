"""``python3 -m bench <benchmark> [options]``: run one of the benchmarks.

    python3 -m bench pipeline [--quick] [--only drain,api] [--sizes 10k,100k]
    python3 -m bench backup [--size-mb 100]
    python3 -m bench async [--jobs 50000]
    python3 -m bench embeddings [--quick] [--only throughput,search]

Started with any ``python3``, it first makes sure the project's ``.venv`` exists (as
``python3 dev.py`` does) and runs itself there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ("pipeline", "backup", "async", "embeddings")


def _in_project_venv() -> None:
    """Re-run this command with the project's virtualenv's Python, creating it if needed."""
    venv = ROOT / ".venv"
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    sys.path.insert(0, str(ROOT))
    import dev

    dev.ensure_environment()
    python = venv / "bin" / "python"
    os.chdir(ROOT)
    os.execv(python, [str(python), "-m", "bench", *sys.argv[1:]])  # noqa: S606 - our own venv


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in BENCHMARKS:
        print(__doc__)
        return 2
    _in_project_venv()
    name, rest = argv[0], argv[1:]
    if name == "pipeline":
        from bench import pipeline

        return pipeline.main(rest)
    if name == "embeddings":
        from bench import embeddings

        return embeddings.main(rest)
    # The older benchmarks read sys.argv themselves.
    sys.argv = [f"bench {name}", *rest]
    if name == "backup":
        from bench import backup_bench

        return backup_bench.main()
    from bench import async_bench

    return async_bench.main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
