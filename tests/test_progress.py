"""The progress wrapper: when bars are drawn, that hidden bars print nothing, that counts add up."""

import io

import pytest

from lrsjax import _progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def no_env(monkeypatch):
    monkeypatch.delenv(_progress.ENV_VAR, raising=False)


def test_bar_on_a_terminal_draws_and_counts(no_env):
    stream = _Terminal()
    with _progress.bar(10, desc="sampling", unit="samples", file=stream) as b:
        for _ in range(4):
            b.update(2)
        b.update(2)
        assert b.n == 10
    text = stream.getvalue()
    assert "sampling" in text
    assert "10/10" in text
    assert "samples" in text


def test_disabled_bar_prints_nothing_and_is_safe_to_use(no_env):
    stream = _Terminal()
    with _progress.bar(5, desc="stage", enabled=False, file=stream) as b:
        b.update(3)
        b.set_postfix(compile="1.0s")
    assert stream.getvalue() == ""
    assert not _progress.shown(False, stream)


def test_non_terminal_stream_is_quiet_unless_forced(monkeypatch, no_env):
    stream = io.StringIO()
    assert not _progress.shown(True, stream)
    with _progress.bar(3, desc="quiet", file=stream) as b:
        b.update(3)
    assert stream.getvalue() == ""

    monkeypatch.setenv(_progress.ENV_VAR, "1")
    assert _progress.shown(True, stream)
    with _progress.bar(3, desc="forced", file=stream) as b:
        b.update(3)
    assert "forced" in stream.getvalue() and "3/3" in stream.getvalue()
    # The caller's own flag still wins over the environment.
    assert not _progress.shown(False, stream)


def test_environment_can_silence_a_terminal(monkeypatch):
    monkeypatch.setenv(_progress.ENV_VAR, "0")
    stream = _Terminal()
    with _progress.bar(3, desc="silenced", file=stream) as b:
        b.update(3)
    assert stream.getvalue() == ""


def test_default_stream_is_stderr_not_stdout(monkeypatch, capsys):
    monkeypatch.setenv(_progress.ENV_VAR, "1")
    with _progress.bar(2, desc="to-stderr") as b:
        b.update(2)
    _progress.write("a result line")
    captured = capsys.readouterr()
    assert "to-stderr" in captured.err
    assert "to-stderr" not in captured.out
    assert captured.out == "a result line\n"


class _Unreadable:
    def __float__(self):
        raise AssertionError("a hidden bar must not read the loss")


def test_training_step_counts_marks_compilation_and_shows_the_last_loss(no_env):
    stream = _Terminal()
    losses = [2.0, 1.5, 1.0, 0.75, 0.5]
    with _progress.bar(len(losses), desc="train", unit="step", file=stream) as b:
        for step, loss in enumerate(losses):
            _progress.training_step(b, step, loss)
            if step == 0:
                # The first step carries compilation: the rate is counted from after it.
                assert b.n == 1 and b.initial == 1 and b.compile_s >= 0
        assert b.n == len(losses)
    text = stream.getvalue()
    assert "compile=" in text and "5/5" in text
    assert "loss=0.5000" in text.split("\r")[-1]  # the closed bar shows the last loss


def test_hidden_training_bar_never_reads_the_loss(no_env):
    stream = io.StringIO()  # not a terminal: hidden
    with _progress.bar(3, desc="train", file=stream) as b:
        for step in range(3):
            _progress.training_step(b, step, _Unreadable())
    assert stream.getvalue() == ""


def test_compiled_shows_given_seconds_and_hides_unknown_ones(no_env):
    stream = _Terminal()
    with _progress.bar(4, desc="items", file=stream) as b:
        assert _progress.compiled(b, 2, compile_s=1.25) == 1.25
        assert b.n == 2
    assert "compile=1.2s" in stream.getvalue() or "compile=1.3s" in stream.getvalue()
    stream = _Terminal()
    with _progress.bar(4, desc="items", file=stream) as b:
        _progress.compiled(b, 1, compile_s=float("nan"))
    assert "compile=" not in stream.getvalue()
