"""Shared plumbing of the absl entry points: argument checks, clean errors, `--help` exit 0."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags, logging

_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
# Errors that mean "the user asked for something impossible": printed as one line, exit 1.
USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError)


def job_main(program: str, action: Callable) -> Callable:
    """An absl `main` that builds the job from the shared flags and runs `action(task, job)`."""

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All settings are --flags.")
        logging.set_verbosity(logging.WARNING)
        from lrsjax.cli import _flags  # defines the job flags; lrsjax-report does not want them

        try:
            action(_flags.FLAGS.task, _flags.job_from_flags())
        except USER_ERRORS as error:
            sys.exit(f"{program}: error: {error}")

    return main


def run_app(main: Callable, module_name: str) -> None:
    """Runs `main` under absl; `--help` prints the module's docstring and every flag it uses,
    also when started as a console script (whose `__main__` is a generated wrapper), and
    exits 0."""
    module = sys.modules[module_name]
    main_module = sys.modules.get("__main__")
    if main_module is not None and main_module is not module:
        if not getattr(main_module, "__doc__", None):
            main_module.__doc__ = module.__doc__  # absl prints the main module's docstring
        for flag in flags.FLAGS.get_key_flags_for_module(module):
            flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    asked_for_help = any(a in _HELP_FLAGS for a in sys.argv[1:])
    try:
        app.run(main)
    except SystemExit as exit_:
        if asked_for_help and exit_.code == 1:  # absl exits 1 after printing help
            sys.exit(0)
        raise
