"""Results that are what they say (issue 23): C bounded to float32's range, a fit with non-finite weights
refused, a cold-start fit that never moved not reported as converged."""

import numpy as np
import pytest
import torch

from dcgan_features.core.errors import UserError
from dcgan_features.probes import estimators
from dcgan_features.probes.c_search import search_C
from dcgan_features.probes.linear import MAX_C, LinearFit
from dcgan_features.probes.rows import ArrayRows


@pytest.fixture
def rows(digits):
    X, y, _, _ = digits
    return ArrayRows(X[:200], y[:200])


def _fake(coef_value):
    def fit_torch(probe, source, Cs, n_classes, device, **kw):
        P, d, K = len(Cs), source.dim, 10
        return LinearFit(probe, np.asarray(Cs, float), torch.full((P, d, K), coef_value), torch.zeros(P, K),
                         np.ones(P, bool))
    return fit_torch


def test_cold_start_fit_that_never_moved_is_not_converged(rows, monkeypatch):
    """The solver once returned its zero start with converged: true at C = 1e20 (chance accuracy)."""
    monkeypatch.setattr(estimators, "fit_torch", _fake(0.0))
    assert estimators.fit("svm", rows, [1.0], "torch", 10, "cpu").converged.tolist() == [False]
    warm = estimators.fit("svm", rows, [1.0], "torch", 10, "cpu", init=object())  # a warm start may be optimal
    assert warm.converged.tolist() == [True]


def test_fit_with_non_finite_weights_is_one_line(rows, monkeypatch):
    monkeypatch.setattr(estimators, "fit_torch", _fake(float("nan")))
    with pytest.raises(UserError, match="the svm fit at C=1000 gave non-finite weights"):
        estimators.fit("svm", rows, [1e3], "torch", 10, "cpu")


def test_real_fit_still_converges(rows):
    """The check does not flag a good fit: the real solver on 200 digits rows."""
    fit = estimators.fit("svm", rows, [0.1], "torch", 10, "cpu")
    assert fit.converged.tolist() == [True] and bool(fit.coef.abs().sum() > 0)


@pytest.mark.parametrize("grid", ["1e20", "1e11", "1e-13", "0.1,1e300"])
def test_probe_C_beyond_float32_range_one_line(run_cli, tmp_path, grid):
    feats = tmp_path / "f.h5"
    feats.write_bytes(b"")
    run_cli.error("probe", "digits", "--features", feats, "--C", grid, "--out", tmp_path / "o",
                  match="C values must lie in [1e-12, 1e+10]")
    assert not (tmp_path / "o").exists()


def test_c_search_never_extends_past_the_bound():
    seen = []

    def evaluate(Cs):  # accuracy grows with C: the search wants to go up forever
        seen.extend(Cs)
        return [np.log10(c) for c in Cs]

    s = search_C([1e8, 1e9], evaluate, max_extend=5)
    assert max(seen) == MAX_C and s.extended == 1 and s.at_edge


# ------------------------------------------------------------------ records: never lost, never shared

def _records(digits, name):
    from dcgan_features.probes.protocols import from_arrays, get_protocol, run_protocol

    Xtr, ytr, Xte, yte = digits
    cfg = get_protocol("digits", draws=1)
    return run_protocol("digits", from_arrays(Xtr, ytr, Xte, yte, name=name), ("knn",), cfg,
                        device="cpu")


def test_foreign_probes_csv_refused_never_rewritten(tmp_path, digits, run_cli):
    from dcgan_features.probes.records import write_records

    table = tmp_path / "probes.csv"
    table.write_text("name,score\nmine,0.97\n")
    with pytest.raises(UserError, match="has columns this tool does not write .name, score.; it is left as it is"):
        write_records(_records(digits, "px"), tmp_path)
    assert table.read_text() == "name,score\nmine,0.97\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "probes.csv"]
    feats = tmp_path / "f.h5"
    feats.write_bytes(b"")
    run_cli.error("probe", "digits", "--features", feats, "--out", tmp_path, match="columns this tool does not write")
    assert table.read_text() == "name,score\nmine,0.97\n"


def test_older_header_of_ours_still_appends(tmp_path, digits):
    """A table written before a column was added is ours: its rows follow the new header."""
    from dcgan_features.probes.records import CSV_COLUMNS, write_records

    (tmp_path / "probes.csv").write_text(",".join(CSV_COLUMNS[:3]) + "\nd,,p\n")
    write_records(_records(digits, "px"), tmp_path)
    lines = (tmp_path / "probes.csv").read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and lines[1].startswith("d,,p,")


def test_two_feature_files_of_one_name_keep_their_own_records(tmp_path, digits):
    from dcgan_features.probes.records import write_records

    paths = []
    for sub in ("a", "b"):
        f = tmp_path / sub / "f.h5"
        f.parent.mkdir()
        f.write_bytes(b"x")
        recs = [{**r, "features": "f.h5", "features_path": str(f)} for r in _records(digits, "f.h5")]  # as from_file
        paths += write_records(recs, tmp_path / "out")[:-1]
    assert len(set(paths)) == len(paths) == 4 and all(p.exists() for p in paths)  # 2 files x 2 columns
    import json
    assert sorted(json.loads(p.read_text())["features_path"] for p in paths) == \
        2 * [str(tmp_path / "a" / "f.h5")] + 2 * [str(tmp_path / "b" / "f.h5")]
