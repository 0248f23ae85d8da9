"""benchmarks/strength.py runs end to end with its tiny config, and its records are consistent."""

import importlib.util
import json
import pathlib
import sys

import numpy as np
import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "strength.py"


def _strength():
    spec = importlib.util.spec_from_file_location("strength_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def test_strength_segmentation_tiny(tmp_path, capsys):
    strength = _strength()
    out = tmp_path / "out"
    assert strength.main(["--config=tiny", "--part=segmentation", f"--out={out}"]) == 0
    records = {p.stem: json.loads(p.read_text()) for p in (out / "segmentation").glob("*.json")}
    assert set(records) == {"local_localized_0.15_0.5", "local_isotropic_0.25"}
    localized = records["local_localized_0.15_0.5"]["variants"]["localized"]
    isotropic = records["local_isotropic_0.25"]["variants"]
    # Equal samples per distribution vs equal forward passes: K = 4 cells.
    assert isotropic["equal_samples"]["forward_passes"] == localized["forward_passes"] // 4
    assert isotropic["equal_compute"]["forward_passes"] == localized["forward_passes"]
    certs = localized["certificates"]
    naive, lp, hull, milp = (np.array(certs[m]["certified_correct"]) for m in
                             ("naive", "lp", "hull", "milp"))  # fmt: skip
    # The relaxations are ordered on the same base certificates: naive <= LP <= hull <= MILP.
    assert np.all(naive <= lp) and np.all(lp <= hull) and np.all(hull <= milp)
    # A rerun skips what is done; --plot writes both figure formats.
    capsys.readouterr()
    strength.main(["--config=tiny", "--part=segmentation", f"--out={out}"])
    assert "done before, skipped" in capsys.readouterr().out
    strength.main([f"--out={out}", "--plot", f"--figure_dir={tmp_path}"])
    assert (tmp_path / "strength_pareto.png").stat().st_size > 0
    assert (tmp_path / "strength_pareto.pdf").stat().st_size > 0


def test_strength_rejects_missing_graph_data(tmp_path):
    with pytest.raises(SystemExit, match="data_dir"):
        _strength().main(["--part=graph", f"--data_dir={tmp_path}", f"--out={tmp_path}"])


@pytest.mark.slow
def test_strength_graph_tiny(tmp_path):
    out = tmp_path / "out"
    argv = ["--config=tiny", "--part=graph", f"--out={out}", f"--model_dir={tmp_path / 'm'}"]
    assert _strength().main(argv) == 0
    records = [json.loads(p.read_text()) for p in (out / "graph").glob("*.json")]
    assert {r["kind"] for r in records} == {"localized", "sparse_smoothing", "isotropic_variance"}
    for record in records:
        for cert in record["certificates"].values():
            assert np.all(np.diff(cert["certified_accuracy"][:3]) <= 0)  # deletions 0, 1, 2
