"""Every flag an error suggests is an option of the command that printed it (or of the command it names).

Each case walks an error path whose message suggests a fix; the flags in the message are
checked against the command's own click parameters (the CLI's introspection, not a list kept
here). A flag inside a backquoted ``dcgan-features CMD ...`` (or ```CMD ...```) is checked
against CMD instead.
"""

import re

import click
import pytest

from dcgan_features.cli import cli

FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def options_of(command: str) -> set[str]:
    cmd = cli.commands[command]
    return {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts} | {"--help"}


def flags_by_command(command: str, message: str) -> dict[str, set[str]]:
    """The flags of ``message`` by the command they belong to: backquoted commands are their own."""
    found: dict[str, set[str]] = {}
    rest = message
    for quoted in re.findall(r"`([^`]*)`", message):
        words = quoted.split()
        words = words[1:] if words and words[0] == "dcgan-features" else words
        if words and words[0] in cli.commands:
            found.setdefault(words[0], set()).update(FLAG.findall(quoted))
            rest = rest.replace(f"`{quoted}`", "")
    found.setdefault(command, set()).update(FLAG.findall(rest))
    return found


def test_the_checker_catches_a_wrong_flag():
    bad = flags_by_command("extract", "pass --data-dir DIR or --download; or run `dcgan-features datasets --download`")
    assert bad == {"extract": {"--data-dir", "--download"}, "datasets": {"--download"}}
    assert "--download" not in options_of("extract") and "--download" in options_of("datasets")


@pytest.fixture
def empty(tmp_path):
    (tmp_path / "empty").mkdir()
    return tmp_path / "empty"


def _cases(tmp, empty):
    rd = ["reproduce"]
    return [
        ["extract", "--random-init", "--arch", "dcgan32", "--dataset", "cifar10", "--data-dir", empty,
         "--out", tmp / "x.h5"],
        ["extract", "--random-init", "--arch", "dcgan32", "--dataset", "svhn", "--data-dir", empty, "--out", tmp / "s.h5"],
        ["train", "--dataset", "cifar10", "--data-dir", empty, "--arch", "dcgan32", "--out", tmp / "t"],
        ["train", "--dataset", "imagenet32", "--data-dir", empty, "--arch", "dcgan32", "--out", tmp / "t2"],
        rd + ["svhn", "--data-dir", empty, "--out", tmp / "rs"],
        rd + ["cifar10", "--data-dir", empty, "--out", tmp / "rc"],  # trains on ImageNet: --train-data-dir
        rd + ["digits", "--train-data-dir", empty, "--out", tmp / "rd"],
        rd + ["digits", "--checkpoint", tmp / "none.pt", "--out", tmp / "rd2"],
        ["quickstart", "--dataset", "cifar10", "--data-dir", empty, "--out", tmp / "q"],
        ["datasets", "--verify", "cifar10", "--data-dir", empty],
        ["datasets", "--verify", "imagenet32", "--data-dir", empty],
        ["probe", "digits", "--features", tmp / "none.h5"],
        ["extract", "--checkpoint", tmp / "none.pt", "--arch", "dcgan32", "--dataset", "digits", "--out", tmp / "c.h5"],
    ]


def test_every_flag_in_an_error_exists_on_its_command(run_cli, tmp_path, empty):
    seen = 0
    for argv in _cases(tmp_path, empty):
        code, _, err = run_cli(*argv)
        assert code != 0, (argv, err)
        message = err.strip().splitlines()[-1]
        assert message.startswith("error: "), (argv, err)
        for command, flags in flags_by_command(argv[0], message).items():
            unknown = flags - options_of(command)
            assert not unknown, f"`{' '.join(map(str, argv))}` suggests {sorted(unknown)}, not options of " \
                                f"{command}: {message}"
            seen += len(flags)
    assert seen >= 15  # the cases do suggest flags


def test_reproduce_names_the_training_data_flag(run_cli, tmp_path, empty):
    line = run_cli.error("reproduce", "cifar10", "--data-dir", empty, "--out", tmp_path / "r", match="imagenet32")
    assert "--train-data-dir (with --train-dataset imagenet32)" in line and "as --data-dir" not in line


def test_dry_run_says_what_is_missing(run_cli, tmp_path, empty):
    code, out, err = run_cli("reproduce", "svhn", "--data-dir", empty, "--out", tmp_path / "r", "--dry-run")
    assert code in (0, None), err
    lines = out.splitlines()
    extract = next(ln for ln in lines if "extract:trained" in ln)
    assert "blocked" in extract and "missing input: svhn train split not found" in extract
    assert "blocked" in next(ln for ln in lines if "probe:trained" in ln)
    assert "cannot run until their input is there" in lines[-1]
    assert not (tmp_path / "r").exists()
