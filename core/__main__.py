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
from core.training.threads import prefer_passive_wait


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


def shown_once(show):
    """`warnings.showwarning` that passes each distinct sentence on once: one command reads
    the same data for several steps (test set, normals, calibration), and a bad file is
    named once, not once per step."""
    seen: set[str] = set()

    def show_once(message, category, filename, lineno, file=None, line=None):
        if str(message) not in seen:
            seen.add(str(message))
            show(message, category, filename, lineno, file, line)

    return show_once


def main(argv: list[str] | None = None) -> int:
    prefer_passive_wait()  # idle OpenMP threads sleep: set before any verb imports torch
    warnings.formatwarning = one_line_warning
    args = build_parser().parse_args(argv)
    saved_show = warnings.showwarning
    warnings.showwarning = shown_once(saved_show)
    try:
        return int(args.handler(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # permission denied, read-only file system, disk full
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}; check that the folder exists and that you "
              "may write to it, or choose another path", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = saved_show


if __name__ == "__main__":
    sys.exit(main())
