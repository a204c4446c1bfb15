"""Run the benchmarks: `python -m bench [--quick] [name ...]` (default: all of them).

Each prints its table and a SUMMARY line; see bench/README.md for the latest figures.
"""

from __future__ import annotations

import importlib
import sys
import time

NAMES = ("ingest", "client", "history", "startup", "callback_to_screen", "memory")


def main(argv: list[str]) -> int:
    flags = [a for a in argv if a.startswith("-")]
    names = [a for a in argv if not a.startswith("-")] or list(NAMES)
    unknown = set(names) - set(NAMES)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; choose from {', '.join(NAMES)}")
        return 2
    failed = 0
    summaries = []
    for name in names:
        started = time.perf_counter()
        print(f"\n=== bench.{name} ===", flush=True)
        code = importlib.import_module(f"bench.{name}").main(flags)
        failed += bool(code)
        summaries.append(f"{name}: exit {code} in {time.perf_counter() - started:.0f} s")
    print("\n" + "\n".join(summaries))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
