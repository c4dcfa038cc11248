"""Progress off a terminal (lines with the ETA) and on one (a tqdm bar), and each long stage's lines."""

import io

import pytest

from dcgan_features.core.progress import Progress, format_seconds


class Clock:
    """A clock the test moves: each read returns the current time."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_lines_every_tenth_with_rate_and_eta():
    clock, out = Clock(), io.StringIO()
    p = Progress(100, "train", unit="step", stream=out, quiet_seconds=0, clock=clock)
    for _ in range(100):
        clock.t += 0.5  # 2 steps/s: after k steps, (100 - k) / 2 seconds remain
        p.update()
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0] == "train: 10/100 step (10%), 2.00 step/s, 5 s elapsed, ETA 45 s"
    assert lines[4] == "train: 50/100 step (50%), 2.00 step/s, 25 s elapsed, ETA 25 s"
    assert lines[-1] == "train: 100/100 step (100%), 2.00 step/s, 50 s elapsed, done"


def test_quiet_start_silence_limit_and_a_growing_total():
    clock, out = Clock(), io.StringIO()
    p = Progress(1000, "probe", unit="fit", stream=out, quiet_seconds=10, max_silence=30, clock=clock)
    clock.t = 5
    p.update(100)  # a tenth, but inside the quiet start: nothing
    assert out.getvalue() == ""
    clock.t = 40
    p.update(1)  # not at a tenth, but 40 s without a line
    assert out.getvalue().count("\n") == 1 and "101/1000" in out.getvalue()
    p.add_total(1000)  # the grid widened: lines every 200 now
    clock.t = 41
    p.update(98)  # 199: no line
    p.update(1)  # 200
    assert out.getvalue().splitlines()[-1].startswith("probe: 200/2000 fit (10%)")


def test_a_bar_on_a_terminal_and_nothing_when_off():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    tty = Tty()
    with Progress(10, "extract f.h5", unit="img", stream=tty) as p:
        p.update(10)
    assert "extract f.h5" in tty.getvalue() and "10/10" in tty.getvalue()  # tqdm's bar
    off = Tty()
    with Progress(10, "x", stream=off, mode=False) as p:
        p.update(10)
    assert off.getvalue() == ""


def test_format_seconds():
    assert [format_seconds(s) for s in (0, 59.4, 61, 3599, 3600, 90061)] == \
        ["0 s", "59 s", "1 min 01 s", "59 min 59 s", "1 h 00 min", "25 h 01 min"]


@pytest.fixture
def lines_now(monkeypatch):
    monkeypatch.setattr("dcgan_features.core.progress.QUIET_SECONDS", 0.0)


def test_train_prints_lines_off_a_terminal(run_cli, tmp_path, lines_now):
    code, _, err = run_cli("train", "--dataset", "synthetic", "--arch", "dcgan32", "--width", "4", "--batch-size",
                           "100", "--device", "cpu", "--epochs", "2", "--sample-every", "5", "--out", tmp_path / "r")
    assert code in (0, None), err
    lines = [ln for ln in err.splitlines() if ln.startswith("train: ")]
    # 20 steps, 10 per epoch: a line every min(epoch, a tenth) = 2 steps
    assert [ln.split()[1] for ln in lines] == [f"{k}/20" for k in range(2, 21, 2)], err
    assert "ETA" in lines[0] and lines[-1].split(", ")[3] == "done" and "loss_D" in lines[-1]


def test_probe_columns_print_fits_not_selection_draws(run_cli, tmp_path, digits, lines_now):
    from tests.feature_files import write_features

    Xtr, ytr, Xte, yte = digits
    path = tmp_path / "f.h5"
    write_features(path, {"train": (Xtr, ytr), "test": (Xte, yte)}, dataset="digits")
    code, _, err = run_cli("probe", "digits", "--features", path, "--probe", "svm", "--C", "0.01,0.1", "--extend-C", "0",
                           "--draws", "3", "--device", "cpu", "--out", tmp_path / "p")
    assert code in (0, None), err
    assert "selection draw" not in err
    few = [ln for ln in err.splitlines() if ln.startswith("svm digits/20-per-class: ") and " fit (" in ln]
    assert [ln.split()[2] for ln in few] == ["1/3", "2/3", "3/3"], err  # one fit per draw over the whole grid
    full = [ln for ln in err.splitlines() if ln.startswith("svm digits/all: ") and " fit (" in ln]
    assert [ln.split()[2] for ln in full] == ["1/2", "2/2"], err  # the grid, then the refit


def test_extract_prints_lines_off_a_terminal(run_cli, tmp_path, lines_now):
    code, _, err = run_cli("extract", "--model", "random:dcgan32", "--width", "4", "--dataset", "synthetic",
                           "--batch-size", "50", "--limit", "200", "--device", "cpu", "--out", tmp_path / "f.h5")
    assert code in (0, None), err
    lines = [ln for ln in err.splitlines() if ln.startswith("extract f.h5: ")]
    assert lines and lines[-1].startswith("extract f.h5: 400/400 img (100%)"), err
    bn = [ln for ln in err.splitlines() if ln.startswith("BatchNorm statistics: ")]  # the pass before it
    assert bn and bn[-1].startswith("BatchNorm statistics: 200/200 img (100%)"), err
