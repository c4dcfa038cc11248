"""What `train` says at the end: a resumed run with nothing left to do says so (not "0 img/s")."""

TINY = ["--dataset", "synthetic", "--arch", "dcgan32", "--width", "4", "--batch-size", "100", "--device", "cpu",
        "--epochs", "1", "--sample-every", "5"]


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(run_cli, tmp_path):
    code, out, err = run_cli("train", *TINY, "--out", tmp_path / "r")
    assert code in (0, None), err
    first = out.strip().splitlines()[-1]
    assert first.startswith("trained to step 10 (epoch 1.00), loss_D ") and " 0 img/s" not in first
    code, out, err = run_cli("train", *TINY, "--out", tmp_path / "r", "--resume")
    assert code in (0, None), err
    line = out.strip().splitlines()[-1]
    assert "already trained to step 10 (epoch 1.00); nothing to do (raise --epochs" in line
    assert "img/s" not in line
