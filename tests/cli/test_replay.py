"""``--config FILE``: a run's config.json (or the user's JSON) read as options, the command line overriding it."""

import dataclasses
import json

import pytest

from dcgan_features.train.config import TrainConfig


def _captured_train(run_cli, monkeypatch, *argv) -> TrainConfig:
    import dcgan_features.train.loop as train_mod

    seen = []
    monkeypatch.setattr(train_mod, "train", lambda cfg: seen.append(cfg) or (_ for _ in ()).throw(SystemExit(0)))
    code, _, err = run_cli("train", *argv)
    assert seen, err
    return seen[0]


def test_a_runs_config_json_replays_with_flags_overriding(run_cli, monkeypatch, tmp_path):
    ran = TrainConfig(dataset="digits", arch="dcgan32", out="runs/a", epochs=3, width=8, batch_size=32, lr=1e-4,
                      beta1=0.3, seed=5, device="cpu", amp=False, log_every=7, resume=True, overwrite=True)
    path = tmp_path / "config.json"  # the shape train writes: the settings under "config", facts beside them
    path.write_text(json.dumps({"config": dataclasses.asdict(ran), "package_version": "x", "n_images": 1297}))
    got = _captured_train(run_cli, monkeypatch, "--config", path, "--out", "runs/b", "--lr", "3e-4")
    # every setting from the file, the flags given win, and resume/overwrite are never replayed
    assert got == dataclasses.replace(ran, out="runs/b", lr=3e-4, resume=False, overwrite=False)


def test_users_json_with_flag_spellings(run_cli, monkeypatch, tmp_path):
    import numpy as np

    from tests.feature_files import write_features

    seen = []
    monkeypatch.setattr("dcgan_features.probes.protocols.run_protocol",
                        lambda *a, **kw: seen.append((a, kw)) or (_ for _ in ()).throw(SystemExit(0)))
    feats = tmp_path / "f.h5"
    X = np.random.default_rng(0).normal(size=(60, 4)).astype(np.float32)
    write_features(feats, {"train": (X, np.arange(60) % 10), "test": (X, np.arange(60) % 10)}, dataset="digits")
    cfg = tmp_path / "p.json"
    cfg.write_text(json.dumps({"dataset": "digits", "features": str(feats), "probe": ["knn"], "draws": 2,
                               "val-size": 20, "out": str(tmp_path / "p")}))
    run_cli("probe", "--config", cfg, "--draws", "3")
    (name, _, probes, protocol), kw = seen[0][0][:4], seen[0][1]
    assert name == "digits" and probes == ("knn",) and protocol.draws == 3 and protocol.val_size == 20


@pytest.mark.parametrize("text,match", [
    ('{"dataset": "digits", "bogus": 1}', "bogus is not an option of `train`"),
    ("dataset: digits", "is not JSON"),
    ("[1, 2]", "must hold a JSON object"),
])
def test_bad_config_files_are_one_line(run_cli, tmp_path, text, match):
    path = tmp_path / "c.json"
    path.write_text(text)
    run_cli.error("train", "--config", path, "--arch", "dcgan32", "--out", tmp_path / "r", match=match)
    assert not (tmp_path / "r").exists()
