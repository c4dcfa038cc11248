"""Each CLI default and choice list exists once: in a config dataclass or a registry."""

import dataclasses
import inspect
import shlex

import click
import pytest

from dcgan_features.cli import cli
from dcgan_features.extract.config import ExtractConfig
from dcgan_features.look.config import (ArithmeticConfig, ForgetConfig, InterpolateConfig, NeighboursConfig,
                                        SampleConfig, VisualizeConfig)
from dcgan_features.probes.config import ProbeConfig
from dcgan_features.reproduce.quickstart import QuickstartConfig
from dcgan_features.reproduce.config import ReproduceConfig
from dcgan_features.train.config import TrainConfig

# command -> the config whose fields are its options' defaults (same names)
CONFIGS = {"train": TrainConfig, "extract": ExtractConfig, "probe": ProbeConfig, "quickstart": QuickstartConfig,
           "reproduce": ReproduceConfig, "architectures": ExtractConfig, "sample": SampleConfig,
           "interpolate": InterpolateConfig, "arithmetic": ArithmeticConfig, "visualize": VisualizeConfig,
           "neighbours": NeighboursConfig, "forget": ForgetConfig}


def _signature_default(dotted: str, param: str):
    module, func = dotted.rsplit(".", 1)
    return inspect.signature(getattr(__import__(module, fromlist=[func]), func)).parameters[param].default


# options whose default lives in a library function's signature, or nowhere but the CLI
# (None: "unset", the library decides; required options have none)
ELSEWHERE = {
    ("extract", "seed"): lambda: __import__("dcgan_features.extract.sources", fromlist=["SourceOptions"]).SourceOptions.seed,
}
# None: chosen per dataset by extract_config (the paper's protocols extract differently)
PER_DATASET = {("extract", "bn"), ("extract", "dtype")}
CLI_ONLY = {  # defaults that no library code has: pinned here, so a change is made in both places on purpose
    ("datasets", "download"): False, ("extract", "random_init"): False,
}
# options the user names every time; a config field of the same name has no default either,
# except where noted (the library's default serves callers that are not the CLI)
REQUIRED = {
    ("import-theano", "arch"), ("import-theano", "out"), ("sample", "out"), ("interpolate", "out"),
    ("arithmetic", "out"), ("arithmetic", "a"), ("arithmetic", "b"), ("arithmetic", "c"),
    ("probe", "features_path"), ("train", "dataset"), ("train", "arch"), ("train", "out"), ("reproduce", "out"),
    ("visualize", "dataset"), ("visualize", "out"), ("neighbours", "dataset"), ("neighbours", "out"),
    ("forget", "boxes_path"), ("forget", "out"),
}
# ReproduceConfig.out: the CLI asks for a folder; the look configs' dataset serves `reproduce --look`
REQUIRED_BUT_LIBRARY_DEFAULT = {("reproduce", "out"), ("visualize", "dataset"), ("neighbours", "dataset")}


def _options():
    for name, cmd in cli.commands.items():
        for p in cmd.params:
            if isinstance(p, click.Option) and not p.hidden and p.name != "help":
                yield name, p


@pytest.mark.parametrize("command,option", [(c, p.name) for c, p in _options()])
def test_every_default_comes_from_one_place(command, option):
    p = next(q for c, q in _options() if c == command and q.name == option)
    fields = {f.name: f for f in dataclasses.fields(CONFIGS[command])} if command in CONFIGS else {}
    assert p.required == ((command, option) in REQUIRED), f"{command} --{option}: required is {p.required}"
    if p.required:  # no default: the user names it every time, and no config supplies one silently
        if option in fields and (command, option) not in REQUIRED_BUT_LIBRARY_DEFAULT:
            assert fields[option].default is dataclasses.MISSING is fields[option].default_factory, (command, option)
        return
    default = p.get_default(click.Context(cli.commands[command]), call=False)
    default = tuple(default) if p.multiple else default
    config = CONFIGS.get(command)
    if (command, option) in PER_DATASET:
        assert default is None and option in {f.name for f in dataclasses.fields(CONFIGS[command])}
    elif config is not None and option in {f.name for f in dataclasses.fields(config)}:
        want = getattr(config, option, None)
        if command == "extract" and option == "splits":
            want = ",".join(want)
        assert default == want, f"{command} --{option}: click default {default!r}, {config.__name__}.{option} {want!r}"
    elif (command, option) in ELSEWHERE:
        assert default == ELSEWHERE[command, option]()
    elif (command, option) in CLI_ONLY:
        assert default == CLI_ONLY[command, option], f"{command} --{option}: {default!r}"
    else:  # a new option: read its default from a config, or say here where it lives
        assert default is None or p.is_flag and default is False, \
            f"{command} --{option} has default {default!r} from nowhere: add it to a config dataclass"


def test_choice_lists_are_the_registries():
    from dcgan_features.core.devices import DEVICES
    from dcgan_features.extract.hooks import BN_MODES
    from dcgan_features.probes.config import BACKENDS, PROBE_NAMES
    from dcgan_features.data.registry import DATASETS
    from dcgan_features.probes.protocols import PROTOCOLS

    probe = {p.name: p for p in cli.commands["probe"].params}
    assert probe["dataset"].type.choices == tuple(DATASETS) and set(PROTOCOLS) <= set(DATASETS)
    assert probe["probes"].type.choices == PROBE_NAMES + ("all",)
    assert probe["backend"].type.choices == BACKENDS
    for name, p in _options():
        if p.name == "device":
            assert p.type.choices == DEVICES, name
    assert {p.name: p for p in cli.commands["extract"].params}["bn"].type.choices == BN_MODES


def test_the_cli_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, dcgan_features.cli; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def _parsed_train_config(run_cli, monkeypatch, command: str) -> TrainConfig:
    import dcgan_features.train.loop as train_mod

    seen = []
    monkeypatch.setattr(train_mod, "train", lambda cfg: seen.append(cfg) or (_ for _ in ()).throw(SystemExit(0)))
    run_cli(*shlex.split(command)[1:])
    return seen[0]


def test_resume_command_parses_back_to_the_same_run(run_cli, monkeypatch):
    cfg = TrainConfig(dataset="digits", arch="dcgan32", out="runs/x y", epochs=3, width=8, data_dir="d", lr=1e-3,
                      beta1=0.3, nz=12, seed=5, device="cpu", amp=False, compile=True, sample_every=2,
                      ckpt_every=7, keep_every=0, log_every=3, max_steps=40)
    again = _parsed_train_config(run_cli, monkeypatch, cfg.resume_command())
    assert again == TrainConfig(**{**cfg.__dict__, "resume": True})


def test_resume_command_survives_a_changed_cli_default(run_cli, monkeypatch):
    """A run started with every default resumes with those values even if the CLI's defaults drift."""
    cfg = TrainConfig(dataset="digits", arch="dcgan32", out="runs/d")
    for p in cli.commands["train"].params:
        if p.name in ("lr", "epochs", "amp", "compile", "keep_every"):
            monkeypatch.setattr(p, "default", {"lr": 1e-3, "epochs": 2, "amp": False, "compile": True,
                                               "keep_every": 3}[p.name])
    again = _parsed_train_config(run_cli, monkeypatch, cfg.resume_command())
    assert again == TrainConfig(**{**cfg.__dict__, "resume": True})


def test_generation_defaults_are_the_look_configs_and_the_library_reads_them_too():
    """sample/interpolate/arithmetic sizes live in look/config.py alone; arithmetic()'s own
    keyword defaults are the same values (one place, read twice)."""
    for command, config in (("sample", SampleConfig), ("interpolate", InterpolateConfig),
                            ("arithmetic", ArithmeticConfig)):
        names = {p.name for c, p in _options() if c == command}
        assert names <= {f.name for f in dataclasses.fields(config)} | {"out", "a", "b", "c"}, command
    assert ArithmeticConfig.n == SampleConfig.n  # the ids of a default `sample --numbered` grid
    for param in ("neighbours", "noise"):
        assert _signature_default("dcgan_features.look.generate.arithmetic", param) == getattr(ArithmeticConfig, param)
