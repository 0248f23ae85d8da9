"""Every example runs with tiny settings (in-process, to share JAX's start-up and compile cache)."""

import argparse
import importlib.util
import pathlib
import re

import numpy as np
import pytest

from lrsjax.cli import _flags

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_certify_segmentation_example(capsys):
    args = argparse.Namespace(size=16, grid="2x2", n0=8, n=32, batch_size=16, seed=0)
    cert, result = _load("certify_segmentation").main(args)
    assert cert.prediction.shape == (256,)
    assert np.all(np.diff(result.certified) <= 0)
    assert "collective(LP)" in capsys.readouterr().out


def test_compare_localized_isotropic_example(capsys):
    args = argparse.Namespace(
        checkpoint="", size=16, grid="2x2", std_min=0.15, std_max=1.0, sigma=0.25, n0=8, n=32,
        batch_size=16, max_eps=0.3, seed=0,
    )  # fmt: skip
    _load("compare_localized_isotropic").main(args)
    assert "localized-LP" in capsys.readouterr().out


def test_custom_transforms_example(capsys):
    _load("custom_transforms").main(argparse.Namespace(outputs_per_cell=5, time_limit=2.0, seed=0))
    out = capsys.readouterr().out
    assert out.count("certified") == 9


def test_certify_node_classifier_example(capsys):
    args = argparse.Namespace(
        graph="", signal_density=0.2, clusters=3, theta_plus=0.001, theta_minus=(0.6, 0.95),
        epochs=5, n0=16, n=100, seed=0,
    )  # fmt: skip
    example = _load("certify_node_classifier")
    result = example.main(args)
    out = capsys.readouterr().out
    assert "test nodes correct" in out
    assert out.count("(naive)") == len(example.BUDGETS)
    assert np.all(np.diff(np.asarray(result.certified)[:4]) <= 0)  # more deletions, fewer nodes


def test_reproduce_cora_ml_script_uses_real_flags():
    text = (EXAMPLES / "reproduce_cora_ml.sh").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    used = set(re.findall(r"--([a-z_0-9]+)=", code))
    known = set(_flags._HELP) | {"task"}
    assert used and used <= known, used - known


@pytest.mark.slow
def test_classifier_threat_models_example(capsys):
    args = argparse.Namespace(
        threat="all", size=16, train_images=64, images=4, width=4, steps=20, batch_size=32,
        n0=16, n=100, alpha=0.01, seed=0,
    )  # fmt: skip
    certs = _load("classifier_threat_models").main(args)
    assert set(certs) == {"l2", "l1", "brightness", "gamma"}
    assert certs["gamma"].interval is not None and certs["l2"].interval is None
    for cert in certs.values():
        assert np.all(cert.radius[cert.abstain] == 0)
    assert capsys.readouterr().out.count("certified and correct") == 4
