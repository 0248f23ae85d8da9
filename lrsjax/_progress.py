"""Progress bars for long stages (training, sampling, solving), via tqdm.

Every bar goes to stderr, so printed results on stdout stay clean. Whether a bar is drawn:
  * `enabled=False`: never (callers pass their own flag and need no if-branches);
  * environment `LRSJAX_PROGRESS=0`: never; `LRSJAX_PROGRESS=1`: always, even into a log file;
  * otherwise: only when the bar's stream is a terminal, so tests and CI logs stay quiet.
A bar that is not drawn is a real tqdm object whose calls do nothing, so `update`,
`set_postfix` and `close` are always safe to call.
"""

from __future__ import annotations

import math
import os
import sys
import time

import tqdm

ENV_VAR = "LRSJAX_PROGRESS"
MIN_INTERVAL_S = 0.5


def shown(enabled: bool = True, file=None) -> bool:
    """Whether a bar with `enabled` would be drawn on `file` (default: stderr)."""
    if not enabled:
        return False
    setting = os.environ.get(ENV_VAR, "").strip().lower()
    if setting in ("0", "false", "no", "off"):
        return False
    if setting in ("1", "true", "yes", "on"):
        return True
    stream = sys.stderr if file is None else file
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def bar(
    total: int | None,
    *,
    desc: str,
    unit: str = "it",
    enabled: bool = True,
    leave: bool = True,
    file=None,
    **kwargs,
) -> tqdm.tqdm:
    """A tqdm bar over `total` units of `unit` (None: unknown total), drawn as `shown` decides.

    Args:
      total: how many units the stage has (samples, steps, problems); None if unknown.
      desc: the stage's name, printed before the bar.
      unit: what one unit is ("samples", "step", "problem").
      enabled: False never draws (e.g. the caller's `progress` flag).
      leave: keep the finished bar on screen (False erases it when closed).
      file: the stream (default: stderr at call time).
      **kwargs: passed to `tqdm.tqdm` (e.g. `unit_scale=True`, `position`).

    Use it as a context manager (`with bar(...) as b: b.update(k)`) or call `close()`.
    """
    stream = sys.stderr if file is None else file
    options = dict(dynamic_ncols=True, mininterval=MIN_INTERVAL_S, smoothing=0.1)
    options.update(kwargs)
    return tqdm.tqdm(
        total=total,
        desc=desc,
        unit=unit,
        leave=leave,
        file=stream,
        disable=not shown(enabled, stream),
        **options,
    )


def compiled(progress_bar: tqdm.tqdm, done: int = 1, *, compile_s=None, **postfix) -> float:
    """Marks the end of compilation: `done` units are finished and the rate is measured from now.

    The first units of a jitted loop include tracing and compilation; counting them in the rate
    would make the rate and the ETA too pessimistic. This adds `done` units, restarts the bar's
    clock and shows `compile=<s>` (plus `postfix`): `compile_s` if given (NaN: not shown), else
    the seconds since the bar started, which are returned.
    """
    seconds = float(progress_bar.format_dict["elapsed"]) if compile_s is None else compile_s
    if progress_bar.disable:
        progress_bar.update(done)
        return seconds
    progress_bar.reset()
    progress_bar.update(done)
    progress_bar.initial = progress_bar.last_print_n = progress_bar.n  # rate counts from here
    if math.isfinite(seconds):
        progress_bar.compile_s = seconds
        postfix = {"compile": f"{seconds:.1f}s", **postfix}
    progress_bar.set_postfix(postfix)
    return seconds


def training_step(progress_bar: tqdm.tqdm, step: int, loss, **postfix) -> None:
    """Advances a training bar by one step; shows `loss` (a scalar, device arrays are fine).

    Step 0 waits for `loss` and marks compilation (see `compiled`). Later steps read `loss` at
    most every `MIN_INTERVAL_S` seconds and at the last step, so the device queue is not drained
    at every step. A hidden bar never reads `loss`. Reading a value never changes it: results are
    the same with and without the bar.
    """
    if progress_bar.disable:
        return
    now = time.perf_counter()
    if step == 0:
        compiled(progress_bar, 1, loss=f"{float(loss):.4f}", **postfix)
        progress_bar.postfix_t = now
        return
    progress_bar.update(1)
    last = progress_bar.n == progress_bar.total
    if last or now - getattr(progress_bar, "postfix_t", 0.0) >= MIN_INTERVAL_S:
        progress_bar.postfix_t = now
        values = {}
        if hasattr(progress_bar, "compile_s"):
            values["compile"] = f"{progress_bar.compile_s:.1f}s"
        values.update(loss=f"{float(loss):.4f}", **postfix)
        progress_bar.set_postfix(values, refresh=False)


def write(message: str) -> None:
    """Prints `message` to stdout without tearing a bar drawn on the terminal."""
    tqdm.tqdm.write(str(message), file=sys.stdout)
