"""``train``: a DCGAN run, every default from :class:`~dcgan_features.train.config.TrainConfig`."""

from __future__ import annotations

import inspect

import click

from ..train.config import GPU_VERIFIED, TrainConfig
from .group import MAX_BATCH, MAX_LR, MAX_NZ, MAX_WIDTH, SEED, FiniteRange, cli, device_option, out_folder, \
    threads_option
from .replay import config_option

T = TrainConfig  # class attributes: the defaults


@cli.command("train")
@config_option
@click.option("--dataset", required=True, metavar="NAME",
              help="Training images, labels unused (see `dcgan-features datasets`).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=T.data_dir,
              help="Root folder of the datasets. [default: ./data, then known system folders]")
@click.option("--arch", required=True, metavar="NAME", help="Architecture (see `dcgan-features architectures`).")
@click.option("--width", type=click.IntRange(1, MAX_WIDTH), default=T.width,
              help="Channel width of G and D. [default: the architecture's]")
@click.option("--epochs", type=click.IntRange(min=1), default=T.epochs, help="Passes over the training split.")
@click.option("--out", required=True, type=click.Path(file_okay=False), callback=out_folder,
              help="Run folder: config.json, metrics.jsonl, samples/, checkpoints/, losses.png.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=T.batch_size,
              help="Global batch (split over torchrun ranks).")
@click.option("--lr", type=FiniteRange(min=0, max=MAX_LR, min_open=True), default=T.lr, help="Adam learning rate, G and D.")
@click.option("--beta1", type=click.FloatRange(min=0, max=1, max_open=True), default=T.beta1, help="Adam beta1.")
@click.option("--nz", type=click.IntRange(1, MAX_NZ), default=T.nz, help="Latent size. [default: the architecture's]")
@click.option("--seed", type=SEED, default=T.seed, help="Seeds init, data order, z and the fixed sample z.")
@device_option(T.device)
@threads_option(T.threads)
@click.option("--amp/--no-amp", default=T.amp, help="bf16 autocast (CUDA only; ignored on CPU).")
@click.option("--compile/--no-compile", default=T.compile,
              help="torch.compile G and D (slow start, faster steps).")
@click.option("--cuda-graph/--no-cuda-graph", default=T.cuda_graph,
              help="Capture the whole step as one CUDA graph and replay it (CUDA only; never run on a GPU yet: "
                   "no results row, so off by default).")
@click.option("--joint-d/--no-joint-d", default=T.joint_d,
              help="One D pass over cat(real, fake), BatchNorm statistics per half (the paper's two passes' math).")
@click.option("--prenormalize/--no-prenormalize", default=T.prenormalize,
              help="Keep the images on the device in [-1, 1] in the compute dtype. [default: when it fits]")
@click.option("--async-ckpt/--no-async-ckpt", default=T.async_ckpt,
              help="Write checkpoints from a snapshot on a background thread.")
@click.option("--resume", is_flag=True, default=T.resume,
              help="Continue the run in --out from checkpoints/last.pt, exactly.")
@click.option("--overwrite", is_flag=True, default=T.overwrite,
              help="Start afresh in an --out that holds another run or files this tool did not write.")
@click.option("--sample-every", type=click.IntRange(min=1), default=T.sample_every, help="Epochs between sample grids.")
@click.option("--ckpt-every", type=click.IntRange(min=1), default=T.ckpt_every,
              help="Steps between writes of checkpoints/last.pt (also written at every epoch end).")
@click.option("--keep-every", type=click.IntRange(min=0), default=T.keep_every,
              help="Epochs between kept checkpoints/epoch_NNN.pt (0: never).")
@click.option("--log-every", type=click.IntRange(min=1), default=T.log_every, help="Steps between metrics.jsonl rows.")
@click.option("--max-steps", type=click.IntRange(min=1), default=T.max_steps,
              help="Stop after this many steps in total (smoke runs). [default: no limit]")
def train_cmd(**settings) -> None:
    """Train a DCGAN (paper defaults: Adam 2e-4, beta1 0.5, batch 128, BCE, one D step per G step).

    Ctrl-C or SIGTERM writes a checkpoint and prints the command that resumes the run.
    Several GPUs or nodes: launch the same command with torchrun.

    \b
      dcgan-features train --dataset digits --arch dcgan32 --width 16 --epochs 5 --out runs/d
      dcgan-features train --dataset fashion-mnist --arch dcgan32 --width 32 --epochs 3 --out runs/fm
      dcgan-features train --dataset cifar10 --data-dir data --arch imagenet32 --compile --out runs/c
      dcgan-features train --dataset cifar10 --data-dir data --arch imagenet32 --out runs/c --resume
      torchrun --nproc-per-node 4 -m dcgan_features.cli train --dataset cifar10 --arch imagenet32 --out runs/c4
    """
    import os

    from ..nets.architectures import get_arch
    from ..data.registry import get_dataset
    from ..train.loop import train

    get_arch(settings["arch"])  # unknown names fail here with the list, before anything is loaded
    get_dataset(settings["dataset"])
    result = train(TrainConfig(**settings))  # every option is a TrainConfig field of the same name
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 alone reports
        m = result.last_metrics
        if not m:  # --resume on a run that had already taken every step: nothing was trained now
            click.echo(f"{result.out} is already trained to step {result.step} (epoch {result.epoch:.2f}); "
                       f"nothing to do (raise --epochs to train further); checkpoint: {result.checkpoint}")
            return
        tail = (f", loss_D {m['loss_d']:.3f}, loss_G {m['loss_g']:.3f}" if m else "")
        click.echo(f"trained to step {result.step} (epoch {result.epoch:.2f}){tail}, "
                   f"{result.img_per_s:.0f} img/s; checkpoint: {result.checkpoint}")


# The GPU paths and their rows, from the one table of them (train.config.GPU_VERIFIED).
train_cmd.help = (inspect.cleandoc(train_cmd.help or "") + "\n\nGPU paths and the results rows that show them running:"
                  "\n\n\b\n" + "\n".join(f"  {path}:\n      {row}" for path, row in GPU_VERIFIED))
