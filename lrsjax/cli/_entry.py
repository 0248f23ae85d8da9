"""Shared plumbing of the absl entry points: argument checks, clean errors, `--help` exit 0,
Ctrl-C as a one-line message with exit status 130."""

from __future__ import annotations

import sys
from collections.abc import Callable

from absl import app, flags, logging

_HELP_FLAGS = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
# Errors that mean "the user asked for something impossible": printed as one line, exit 1.
USER_ERRORS = (ValueError, FileNotFoundError, RuntimeError)
INTERRUPTED = "interrupted; rerun the same command to resume"
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C


def exit_interrupted(message: str) -> None:
    """Ends the process after Ctrl-C: `message` on stderr (no traceback), exit status 130."""
    print(f"\n{message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_INTERRUPTED)


def job_main(program: str, action: Callable, *, used_flags=None) -> Callable:
    """An absl `main` that builds the job from the shared flags and runs `action(task, job)`.

    `used_flags`: {task: names of the flags the action reads}; flags given on the command line
    outside that set are accepted (old commands keep working) with a note that they are ignored.
    """

    def main(argv):
        if len(argv) > 1:
            raise app.UsageError(f"Unexpected arguments: {argv[1:]}. All settings are --flags.")
        logging.set_verbosity(logging.WARNING)
        from lrsjax.cli import _flags  # defines the job flags; lrsjax-report does not want them

        try:
            job = _flags.job_from_flags()
            if used_flags is not None:
                ignored = [n for n in _flags.given_flags() if n not in used_flags[_flags.task()]]
                if ignored:
                    listed = ", ".join(f"--{n}" for n in ignored)
                    note = f"{program}: note: {listed} change(s) nothing here; ignored."
                    print(note, file=sys.stderr)
            action(_flags.task(), job)
        except USER_ERRORS as error:
            sys.exit(f"{program}: error: {error}")
        except KeyboardInterrupt:
            exit_interrupted(f"{program}: {INTERRUPTED}")

    return main


def run_app(main: Callable, module_name: str, *, interrupted: str | None = None) -> None:
    """Runs `main` under absl; `--help` prints the module's docstring and the flags the module
    declares as key flags, also when started as a console script (whose `__main__` is a generated
    wrapper), and exits 0. Ctrl-C at any point prints `interrupted` (default: the program name and
    `INTERRUPTED`) and exits 130."""
    module = sys.modules[module_name]
    program = "lrsjax-" + module_name.rsplit(".", 1)[-1]
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
    except KeyboardInterrupt:
        exit_interrupted(interrupted or f"{program}: {INTERRUPTED}")
