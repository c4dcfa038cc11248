"""The optional look-inside stages of ``reproduce --look``: ``look:visualize`` (paper Fig. 5 on the
probed dataset) and ``look:neighbours`` (the memorisation check against the model's training set).

Each is a :class:`~.stages.Stage` like the others (fingerprinted settings, reused when
unchanged, recomputed when the model changes) and runs the code of the single command.
``forget`` is not a stage: it needs boxes drawn by a person on numbered samples.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .stages import Stage

LOOK_OUTPUTS = {"visualize": ("look/visualize.png", "look/visualize.csv"),
                "neighbours": ("look/neighbours.png", "look/neighbours_distances.png", "look/neighbours_summary.csv")}


def _q(value) -> str:
    import shlex

    return shlex.quote(str(value))


def _settings(cfg) -> dict:
    d = dataclasses.asdict(cfg)
    d.pop("device")  # where it runs is not what it computes
    if d.get("data_dir"):
        d["data_dir"] = str(Path(d["data_dir"]).resolve())
    return d


def look_stages(chain, model_fp: str) -> list[Stage]:
    """The look stages of ``chain``'s run folder, after its model stage."""
    from ..look.config import VisualizeConfig

    cfg, m, out = chain.cfg, chain.model, chain.out
    ck = m["checkpoint"]
    vis = VisualizeConfig(dataset=cfg.protocol, data_dir=cfg.data_dir, device=cfg.device)
    nb = neighbours_config(chain)
    dd = lambda c: f" --data-dir {_q(c.data_dir)}" if c.data_dir else ""  # noqa: E731
    return [
        Stage("look:visualize", {"model": model_fp, **_settings(vis)}, LOOK_OUTPUTS["visualize"],
              _action(chain, "visualize", vis), after=("model",),
              command=f"dcgan-features visualize {_q(ck)} --dataset {vis.dataset}{dd(vis)} --device {cfg.device} "
                      f"--out {_q(out / 'look' / 'visualize.png')}",
              title=f"what the trained D's last-block maps respond to on {vis.dataset}, beside a random D"),
        Stage("look:neighbours", {"model": model_fp, **_settings(nb)}, LOOK_OUTPUTS["neighbours"],
              _action(chain, "neighbours", nb), after=("model",),
              command=f"dcgan-features neighbours {_q(ck)} --dataset {nb.dataset}{dd(nb)} --device {cfg.device} "
                      f"--out {_q(out / 'look' / 'neighbours.png')}",
              title=f"samples' nearest {nb.dataset} training images (memorisation check)"),
    ]


def neighbours_config(chain):
    """The memorisation check compares with the model's own training set (the probed one if unknown)."""
    from ..data.registry import DATASETS
    from ..look.config import NeighboursConfig

    cfg, m, src = chain.cfg, chain.model, chain.source
    trained_on = m["trained_on"] if m["trained_on"] in DATASETS else cfg.protocol
    return NeighboursConfig(dataset=trained_on, device=cfg.device,
                            data_dir=(src.train_data_dir if src.kind == "train" else None) or cfg.data_dir)


def check_look(chain) -> None:
    """Before any work: the memorisation check needs the model's training set on disk."""
    from ..core.errors import UserError
    from ..data.registry import get_dataset

    nb = neighbours_config(chain)
    spec = get_dataset(nb.dataset)
    if spec.open_folder is None and spec.files.get("train") and spec.locate(nb.data_dir, "train") is None:
        raise UserError(f"--look: the model was trained on {nb.dataset}, whose training set the memorisation check "
                        f"compares with; {spec.missing_message(nb.data_dir, 'train')}")


def _action(chain, which: str, cfg):
    def action(stage: Stage, how: str) -> dict:
        (chain.out / "look").mkdir(parents=True, exist_ok=True)
        path = chain.out / "look" / f"{which}.png"
        if which == "visualize":
            from ..look.visualize import visualize

            res = visualize(chain.model["checkpoint"], path, cfg, log=chain.log)
            return {"block": res["block"], "images": res["images"]}
        from ..look.neighbours import neighbours

        res = neighbours(chain.model["checkpoint"], path, cfg, log=chain.log)
        return {s: v["fraction_closer"] for s, v in res["spaces"].items()}
    return action
