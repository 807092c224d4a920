"""`python -m bench [NAME ...]`: run the benchmarks in bench/ (all, or those named) and print their tables."""

import importlib
import pkgutil
import sys

import bench


def main(argv) -> int:
    names = [m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")]
    for name in argv or names:
        if name not in names:
            print(f"no benchmark {name!r}; have: {', '.join(names)}", file=sys.stderr)
            return 2
        module = importlib.import_module(f"bench.{name}")
        if hasattr(module, "run"):
            print(f"== bench.{name}")
            module.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
