"""What the paper leaves undefined or does otherwise is said beside its figures (results rows, report)."""

from types import SimpleNamespace

from dcgan_features.reproduce.paper import paper_records
from dcgan_features.reproduce.report import _results_section


def test_the_papers_plus_minus_is_marked_undefined_and_not_compared():
    (dcgan,) = [r for r in paper_records("cifar10") if r["protocol"] == "cifar10/400-per-class"
                and "DCGAN" in r["features"]]
    assert dcgan["paper_value"] == 73.8 and "no stated definition" in dcgan["note"] and "not compared" in dcgan["note"]
    assert all("definition" not in r["note"] for r in paper_records("svhn"))


def test_report_says_the_imagenet_preprocessing_and_the_undefined_width():
    chain = SimpleNamespace(cfg=SimpleNamespace(protocol="cifar10"), model={"trained_on": "imagenet32"})
    html = _results_section(chain, paper_records("cifar10"))
    assert "min-resized center crops" in html and "squashing its aspect ratio" in html
    assert "no stated definition" in html
    html = _results_section(SimpleNamespace(cfg=SimpleNamespace(protocol="svhn"), model={"trained_on": "svhn"}),
                            paper_records("svhn"))
    assert "min-resized" not in html and "no stated definition" not in html
