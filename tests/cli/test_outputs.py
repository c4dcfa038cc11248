"""Outputs that cannot be aimed elsewhere: every command's --out (and --results) refuses, in one line and
before any work, a path ending in a separator where a file is written, the empty path, and an existing
device, FIFO or socket (or a link to one)."""

import os
import socket

import pytest

from cli_checks import assert_one_line, run_cli

# every command that writes one file, with arguments that would otherwise reach the work
FILE_OUTPUTS = {
    "extract": ["extract", "--random-init", "--arch", "dcgan32", "--width", "4", "--dataset", "digits",
                "--device", "cpu", "--out"],
    "import-theano": ["import-theano", "{tmp}", "--arch", "svhn32", "--out"],
    "sample": ["sample", "{tmp}/g.pt", "--out"],
    "interpolate": ["interpolate", "{tmp}/g.pt", "--out"],
    "arithmetic": ["arithmetic", "{tmp}/g.pt", "--a", "1", "--b", "2", "--c", "3", "--out"],
    "quickstart --results": ["quickstart", "digits", "--out", "{tmp}/q", "--results"],
}
# every command whose --out is a folder
FOLDER_OUTPUTS = {
    "train": ["train", "--dataset", "digits", "--arch", "dcgan32", "--width", "4", "--epochs", "1", "--out"],
    "probe": ["probe", "digits", "--features", "{tmp}/f.h5", "--out"],
    "reproduce": ["reproduce", "digits", "--out"],
    "quickstart": ["quickstart", "digits", "--out"],
}


def _argv(template, tmp_path, out):
    return [a.replace("{tmp}", str(tmp_path)) for a in template] + [out]


@pytest.mark.parametrize("name", FILE_OUTPUTS)
def test_file_output_ending_in_separator_refused(tmp_path, capsys, name):
    code, err = run_cli(capsys, *_argv(FILE_OUTPUTS[name], tmp_path, str(tmp_path / "dir") + os.sep))
    assert_one_line(code, err, "ends with a separator, so it names a folder")
    assert not (tmp_path / "dir").exists()


@pytest.mark.parametrize("name", list(FILE_OUTPUTS) + list(FOLDER_OUTPUTS))
def test_empty_output_refused(tmp_path, capsys, name, monkeypatch):
    monkeypatch.chdir(tmp_path)  # an empty --out must not fall back to the working folder
    code, err = run_cli(capsys, *_argv({**FILE_OUTPUTS, **FOLDER_OUTPUTS}[name], tmp_path, ""))
    assert_one_line(code, err, "''")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["fifo", "socket", "link-to-fifo", "device"])
@pytest.mark.parametrize("name", FILE_OUTPUTS)
def test_special_file_as_output_refused(tmp_path, capsys, name, kind):
    out = tmp_path / "out.bin"
    if kind == "device":
        out = "/dev/null"
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(out))
    else:
        os.mkfifo(tmp_path / "fifo")
        if kind == "fifo":
            os.replace(tmp_path / "fifo", out)
        else:
            out.symlink_to(tmp_path / "fifo")
    want = {"fifo": "is a FIFO", "socket": "is a socket", "link-to-fifo": "a FIFO (through a symbolic link)",
            "device": "is a character device"}[kind]
    code, err = run_cli(capsys, *_argv(FILE_OUTPUTS[name], tmp_path, str(out)))
    assert_one_line(code, err, want)
    assert kind == "device" or os.path.lexists(out)


def test_trailing_separator_means_folder_for_folder_outputs(tmp_path):
    """A folder output given as ``run/`` is the folder ``run`` (checked here at the library level)."""
    from dcgan_features.core.atomic import check_output_folder
    from dcgan_features.core.locks import output_lock

    assert check_output_folder(str(tmp_path / "run") + os.sep) == tmp_path / "run"
    with output_lock(str(tmp_path / "run") + os.sep, folder=True) as lock:
        assert lock == tmp_path / "run" / ".lock"


# ------------------------------------------------------------------ one line for every bad value

SEEDED = {
    "train": FOLDER_OUTPUTS["train"] + ["{tmp}/run"],
    "probe": ["probe", "digits", "--features", "{tmp}/f.h5"],
    "extract": FILE_OUTPUTS["extract"] + ["{tmp}/f.h5"],
    "sample": FILE_OUTPUTS["sample"] + ["{tmp}/s.png"],
    "interpolate": FILE_OUTPUTS["interpolate"] + ["{tmp}/s.png"],
    "arithmetic": FILE_OUTPUTS["arithmetic"] + ["{tmp}/s.png"],
    "reproduce": ["reproduce", "digits", "--out", "{tmp}/r"],
    "quickstart": ["quickstart", "digits", "--out", "{tmp}/q"],
}


@pytest.mark.parametrize("seed", ["-1", str(2**32), "99999999999999999999"])
@pytest.mark.parametrize("name", SEEDED)
def test_seed_outside_generator_range_one_line(tmp_path, capsys, name, seed):
    """numpy and torch take seeds in [0, 2**32): the CLI says so before any work."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in SEEDED[name]]
    code, err = run_cli(capsys, *argv, "--seed", seed)
    assert_one_line(code, err, "--seed", "0<=x<=4294967295")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, said", [
    (FOLDER_OUTPUTS["train"] + ["{tmp}/run", "--lr", "1e300"], "--lr"),
    (FOLDER_OUTPUTS["train"] + ["{tmp}/run", "--lr", "inf"], "--lr"),
    (FOLDER_OUTPUTS["train"] + ["{tmp}/run", "--lr", "nan"], "--lr"),
    (FILE_OUTPUTS["arithmetic"] + ["{tmp}/a.png", "--noise", "inf"], "--noise"),
    (FILE_OUTPUTS["arithmetic"] + ["{tmp}/a.png", "--noise", "nan"], "--noise"),
])
def test_numeric_options_bounded_where_arithmetic_breaks(tmp_path, capsys, argv, said):
    code, err = run_cli(capsys, *[a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert_one_line(code, err, said)
    assert list(tmp_path.iterdir()) == []
