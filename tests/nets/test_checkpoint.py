"""Checkpoints load with weights_only: a crafted file never runs, through any command."""

import pickle
import random

import numpy as np
import pytest
import torch

from dcgan_features.nets import checkpoint
from dcgan_features.nets.architectures import build
from dcgan_features.cli import main
from dcgan_features.core.errors import CheckpointError
from dcgan_features.train.state import capture_rng, restore_rng
from cli_checks import run_cli, assert_one_line


class Payload:
    """Creates ``marker`` when unpickled by anything that calls what a pickle names."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))



def tiny_payload(**extra) -> dict:
    G, D = build("dcgan32", width=4)
    return checkpoint.make_payload("dcgan32", 4, G, D, **extra)


@pytest.fixture
def evil(tmp_path):
    """(a .pt whose payload opens a file, plain pickles doing the same, the marker they create)."""
    marker = tmp_path / "ran"
    pt = tmp_path / "evil.pt"
    torch.save({**tiny_payload(), "format": Payload(marker)}, pt)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps(Payload(marker), protocol=2))
    framed = tmp_path / "framed.pkl"  # protocol 5: torch's unpickler stops at its first opcode
    framed.write_bytes(pickle.dumps(Payload(marker), protocol=5))
    return pt, plain, framed, marker


def test_control_the_payload_runs_under_a_plain_load(evil):
    pt, plain, framed, marker = evil
    torch.load(pt, weights_only=False)
    assert marker.exists()  # so the tests below, which check that it does not, can fail


def test_payload_refused_by_every_command(evil, tmp_path, capsys):
    pt, plain, framed, marker = evil
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.pt").write_bytes(pt.read_bytes())
    commands = [
        ("sample", pt, "--out", tmp_path / "s.png", "--n", "4", "--device", "cpu"),
        ("extract", "--checkpoint", pt, "--dataset", "digits", "--out", tmp_path / "f.h5", "--device", "cpu"),
        ("extract", "--checkpoint", plain, "--dataset", "digits", "--out", tmp_path / "f.h5", "--device", "cpu"),
        ("sample", plain, "--out", tmp_path / "s.png", "--n", "4", "--device", "cpu"),
        ("train", "--dataset", "digits", "--arch", "dcgan32", "--width", "4", "--epochs", "1", "--out", run,
         "--resume", "--device", "cpu"),
    ]
    for argv in commands:
        code, err = run_cli(capsys, *argv)
        assert_one_line(code, err, "not a dcgan-features checkpoint", "refused")
        assert not marker.exists(), argv
    code, err = run_cli(capsys, "sample", framed, "--out", tmp_path / "s.png", "--device", "cpu")
    assert_one_line(code, err, "not a torch.save file", "refused")
    assert not marker.exists()
    assert "it names io.open" in run_cli(capsys, *commands[0])[1]
    assert not (tmp_path / "s.png").exists() and not (tmp_path / "f.h5").exists()


def test_round_trip_and_rng_states_are_tensors(tmp_path):
    data_gen, z_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    np.random.seed(5)
    rng = capture_rng(data_gen, z_gen)
    path = tmp_path / "m.pt"
    checkpoint.save(path, tiny_payload(rng=rng, optimizer_G={"state": {}, "param_groups": [{"betas": (0.5, 0.999)}]}))
    assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []  # plain weights_only content
    want = np.random.random(3)
    np.random.random(10)
    restore_rng(checkpoint.load(path)["rng"], data_gen, z_gen)
    np.testing.assert_array_equal(np.random.random(3), want)


def test_checkpoint_written_before_rng_tensors_still_loads(tmp_path):
    """Old training checkpoints held numpy's state tuple (a uint32 array): admitted exactly."""
    np.random.seed(7)
    old_state = np.random.get_state()
    rng = {"torch": torch.get_rng_state(), "cuda": None, "numpy": old_state, "python": random.getstate(),
           "data": torch.Generator().get_state(), "z": torch.Generator().get_state()}
    path = tmp_path / "old.pt"
    torch.save(tiny_payload(rng=rng), path)
    assert "numpy.ndarray" in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    want = np.random.random(2)
    restore_rng(checkpoint.load(path)["rng"], torch.Generator(), torch.Generator())
    np.testing.assert_array_equal(np.random.random(2), want)
    # but no other numpy object: an object array would smuggle arbitrary items
    torch.save({**tiny_payload(), "x": np.array([1.5])}, path)  # float64: not an RNG key array
    with pytest.raises(CheckpointError, match="not a dcgan-features checkpoint"):
        checkpoint.load(path)


@pytest.mark.parametrize("bad, message", [
    ({"format_version": "one"}, "non-integer format_version"),
    ({"arch": 3}, "names no architecture"),
    ({"format": "something-else"}, "not a dcgan-features checkpoint"),
])
def test_malformed_fields(tmp_path, bad, message):
    path = tmp_path / "m.pt"
    torch.save({**tiny_payload(), **bad}, path)
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load(path)


def test_nan_weights_are_named(tmp_path, capsys):
    payload = tiny_payload()
    key = next(k for k, v in payload["D"].items() if v.is_floating_point())
    payload["D"][key] = torch.full_like(payload["D"][key], float("nan"))
    path = tmp_path / "nan.pt"
    checkpoint.save(path, payload)
    for argv in (("sample", path, "--out", tmp_path / "s.png", "--n", "4", "--device", "cpu"),
                 ("extract", "--checkpoint", path, "--dataset", "digits", "--out", tmp_path / "f.h5",
                  "--device", "cpu")):
        assert_one_line(*run_cli(capsys, *argv), "NaN or infinite weights", key)
    assert not (tmp_path / "s.png").exists()
