"""`python -m core <verb>`: each verb lives in its own module under core/cli.

Errors the user can fix (bad paths, layouts, epochs, configs) print one clear line and exit 2
instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import warnings

import core.cli
from core.threads import prefer_passive_wait


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core",
                                     description="ReconScope: diagnostics for reconstruction-based anomaly detection")
    verbs = parser.add_subparsers(dest="verb", required=True)
    for info in sorted(pkgutil.iter_modules(core.cli.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"core.cli.{info.name}")
        if not hasattr(module, "VERB"):
            continue
        sub = verbs.add_parser(module.VERB, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.main)
    return parser


def one_line_warning(message, category, filename, lineno, file=None, line=None) -> str:
    """A warning as the user reads it: its sentence (it names the file and what to do), not
    Python's source line of the code that noticed."""
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    prefer_passive_wait()  # idle OpenMP threads sleep: set before any verb imports torch
    warnings.formatwarning = one_line_warning
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
