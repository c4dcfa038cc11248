"""Every source kind through the one extraction pipeline, on tiny data; each bad input is one UserError."""

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dcgan_features.data.registry import load
from dcgan_features.core.errors import FeatureFileError, UserError
from dcgan_features.extract.run import ExtractConfig, extract, random_init_model
from dcgan_features.extract.sources import SourceOptions, from_spec
from dcgan_features.extract.sources.generic import list_layers
from dcgan_features.extract.sources.kmeans import KMeansSource
from dcgan_features.extract.sources.kmeans_recipe import KMeansConfig, encode
from dcgan_features.extract.store import FeatureFile, partial_path

TINY_KMEANS = KMeansConfig(n_patches=400, iterations=2)
USER_MODEL = '''
from torch import nn

def make():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Conv2d(4, 8, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(8 * 16 * 16, 2))

def not_a_model():
    return 42
'''


def cfg(**kw):
    return ExtractConfig(**{"dataset": "synthetic", "splits": ("train", "test"), "limit": 12, "batch_size": 5,
                            "device": "cpu", "dtype": "float32", **kw})


def read(path, split="test"):
    with FeatureFile(path) as ff:
        return ff.read(split), ff.meta


@pytest.fixture
def user_py(tmp_path):
    p = tmp_path / "mymodel.py"
    p.write_text(USER_MODEL)
    return str(p)


def test_pixels_are_the_model_input_flattened(tmp_path):
    extract(from_spec("pixels"), tmp_path / "p.h5", cfg())
    X, meta = read(tmp_path / "p.h5")
    # the oracle: the uint8 pixels mapped 0 -> -1, 255 -> 1 by numpy, channel-major as stored
    u8 = load("synthetic", "test", image_size=32).images[:12].numpy()
    want = u8.reshape(12, -1).astype(np.float64) / 127.5 - 1.0
    np.testing.assert_allclose(X, want, rtol=0, atol=2.4e-7)  # float32 rounding only
    assert meta["source"] == "pixels" and meta["layer_dims"] == [3072] and meta["bn_mode"] == "none"


def test_random_spec_is_a_seeded_dcgan_init(tmp_path):
    a = from_spec("random:dcgan32", SourceOptions(width=8, seed=1))
    assert a.spec == "random:dcgan32" and (a.arch, a.width) == ("dcgan32", 8)
    # the paper's initialisation, checked from the weights themselves: conv and linear weights
    # N(0, 0.02), biases 0; BN scales N(1, 0.02), shifts 0
    params = dict(a.D.named_parameters())
    convs = [p for n, p in params.items() if n.endswith("weight") and p.ndim > 1]
    scales = [p for n, p in params.items() if n.endswith("weight") and p.ndim == 1]
    w = torch.cat([p.detach().flatten() for p in convs])
    g = torch.cat([p.detach().flatten() for p in scales])
    assert len(w) > 10000 and abs(w.mean().item()) < 1e-3 and 0.019 < w.std().item() < 0.021
    assert len(g) >= 32 and abs(g.mean().item() - 1) < 0.01 and 0.01 < g.std().item() < 0.03
    assert all(torch.count_nonzero(p) == 0 for n, p in params.items() if n.endswith("bias"))
    # a seed is a model: the same seed the same weights (and sha256), another seed others
    again, other = random_init_model("dcgan32", 8, seed=1), random_init_model("dcgan32", 8, seed=2)
    assert again.sha256 == a.sha256 != other.sha256
    same = [torch.equal(x, y) for x, y in zip(a.D.state_dict().values(), again.D.state_dict().values())]
    diff = [torch.equal(x, y) for x, y in zip(a.D.state_dict().values(), other.D.state_dict().values())
            if x.ndim > 1]
    assert all(same) and not any(diff)


def test_kmeans_features_dictionary_and_reuse(tmp_path):
    src = KMeansSource(6, seed=2, config=TINY_KMEANS)
    extract(src, tmp_path / "k.h5", cfg())
    X, meta = read(tmp_path / "k.h5")
    assert meta["source"] == "kmeans:6" and meta["layer_dims"] == [24] and meta["grid"] == 2
    with h5py.File(tmp_path / "k.h5") as f:
        assert sorted(f["_source/kmeans"]) == ["centroids", "mean", "whitening"]
        assert f["_source/kmeans"].attrs["k"] == 6 and f["_source/kmeans"].attrs["patch"] == 6
    test = load("synthetic", "test", image_size=32).images[:12]
    np.testing.assert_allclose(X, encode(test, src.fitted).numpy(), rtol=1e-6)
    # --kmeans-from: the stored dictionary encodes other rows identically, with no fit
    again = from_spec("kmeans:6", SourceOptions(kmeans_from=str(tmp_path / "k.h5")))
    extract(again, tmp_path / "k2.h5", cfg(splits=("test",)))
    X2, meta2 = read(tmp_path / "k2.h5")
    assert np.array_equal(X2, X)
    with h5py.File(tmp_path / "k.h5") as f:  # the reuse is identified by the dictionary's own sha256
        assert meta2["checkpoint_sha256"] == f["_source/kmeans"].attrs["dictionary_sha256"]
    # same seed, same features; another seed, another dictionary
    extract(KMeansSource(6, seed=2, config=TINY_KMEANS), tmp_path / "k3.h5", cfg())
    assert np.array_equal(read(tmp_path / "k3.h5")[0], X)
    extract(KMeansSource(6, seed=3, config=TINY_KMEANS), tmp_path / "k4.h5", cfg())
    assert not np.array_equal(read(tmp_path / "k4.h5")[0], X)


def test_kmeans_from_refuses_another_patch_size_k_or_kind(tmp_path):
    extract(KMeansSource(3, config=KMeansConfig(patch=5, n_patches=300, iterations=1)), tmp_path / "k5.h5",
            cfg(splits=("test",)))
    with pytest.raises(UserError, match="5x5 patches of 3 channels; this extraction needs 6x6"):
        from_spec("kmeans:3", SourceOptions(kmeans_from=str(tmp_path / "k5.h5")))
    extract(KMeansSource(3, config=TINY_KMEANS), tmp_path / "k6.h5", cfg())
    with pytest.raises(UserError, match="holds K = 3 centroids, not the 4"):
        from_spec("kmeans:4", SourceOptions(kmeans_from=str(tmp_path / "k6.h5")))
    extract(from_spec("pixels"), tmp_path / "p.h5", cfg(splits=("test",)))
    with pytest.raises(FeatureFileError, match="holds no K-means dictionary"):
        from_spec("kmeans:3", SourceOptions(kmeans_from=str(tmp_path / "p.h5")))


def test_torchvision_resnet18_features_are_its_pooled_layer_outputs(tmp_path):
    src = from_spec("torchvision:resnet18", SourceOptions(image_size=32, seed=0))
    extract(src, tmp_path / "r.h5", cfg(layers="layer1.0.conv2,layer2.*.conv1", grid=2, bn="running"))
    X, meta = read(tmp_path / "r.h5")
    assert meta["layers"] == ["layer1.0.conv2", "layer2.0.conv1", "layer2.1.conv1"]
    assert meta["layer_dims"] == [256, 512, 512] and meta["architecture"] == "torchvision:resnet18"
    # the same outputs taken by plain hooks on an eval-mode forward (extract left the weights as they were)
    m = src.module.eval()
    got = {}
    for name in meta["layers"]:
        m.get_submodule(name).register_forward_hook(lambda mod, a, o, name=name: got.__setitem__(name, o.clone()))
    x = load("synthetic", "test", image_size=32).images[:12].float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        m(x)
    want = torch.cat([F.adaptive_max_pool2d(got[n], 2).flatten(1) for n in meta["layers"]], 1)
    np.testing.assert_allclose(X, want.numpy(), rtol=1e-4, atol=1e-5)


def test_user_py_file_all_convs_after_their_activation_and_weights(tmp_path, user_py):
    src = from_spec(f"python:{user_py}:make", SourceOptions(seed=0))
    plan = src.plan("all", 4, "running")
    # conv 0 is taken after the ReLU behind its BatchNorm; conv 3 has no activation after it
    assert plan.layers == ["0", "3"] and plan.layer_dims == [64, 128]
    table = {name: (kind, shape) for name, kind, shape in list_layers(src)}
    assert table["2"] == ("ReLU", "4x32x32  (all: 0)") and table["5"] == ("Linear", "2")
    torch.save(src.module.state_dict(), tmp_path / "w.pt")
    extract(from_spec(f"python:{user_py}:make", SourceOptions(weights=str(tmp_path / "w.pt"), seed=9)),
            tmp_path / "u.h5", cfg(bn="recompute"))
    X, meta = read(tmp_path / "u.h5")
    assert X.shape == (12, 192) and meta["bn_mode"] == "recompute" and (X[:, :64] >= 0).all()  # after the ReLU
    from dcgan_features.extract.sources.base import file_sha256
    assert meta["checkpoint_sha256"] == file_sha256(str(tmp_path / "w.pt"))


@pytest.mark.parametrize("spec, opts, match", [
    ("resnet:18", {}, "unknown model kind 'resnet'"),
    ("kmeans:0", {}, "K >= 1"),
    ("kmeans", {}, "needs its argument: --model kmeans:K"),
    ("pixels", {"weights": "w.pt"}, "--weights does not apply to --model pixels"),
    ("torchvision:resnet81", {}, "nearest: resnet18"),
    ("python:no_such_module_xyz:make", {}, "cannot import no_such_module_xyz: ModuleNotFoundError"),
    ("python:USER:missing", {}, "has no callable 'missing'"),
    ("python:USER:not_a_model", {}, "returned int, not an nn.Module"),
])
def test_bad_specs_are_one_line(spec, opts, match, user_py):
    with pytest.raises(UserError, match=match) as e:
        from_spec(spec.replace("USER", user_py), SourceOptions(**opts))
    assert "\n" not in str(e.value)


def test_import_error_of_a_user_file_gives_its_first_line(tmp_path):
    bad = tmp_path / "broken.py"
    bad.write_text("import no_such_dependency_abc\n")
    with pytest.raises(UserError, match="cannot import .*broken.py: ModuleNotFoundError: No module named "
                                        "'no_such_dependency_abc'"):
        from_spec(f"python:{bad}:make")


def test_bad_weights_and_layers_are_one_line_and_write_nothing(tmp_path, user_py):
    src = from_spec(f"python:{user_py}:make")
    sd = src.module.state_dict()
    sd["3.weight"] = torch.zeros(8, 4, 5, 5)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(UserError, match=r"first mismatched key '3.weight' has shape \(8, 4, 5, 5\) in the file"):
        from_spec(f"python:{user_py}:make", SourceOptions(weights=str(tmp_path / "bad.pt")))
    torch.save({"x": torch.nn.Linear(2, 2)}, tmp_path / "code.pt")  # a pickled module: not weights-only
    with pytest.raises(UserError, match="not a loadable state dict"):
        from_spec(f"python:{user_py}:make", SourceOptions(weights=str(tmp_path / "code.pt")))
    out = tmp_path / "x.h5"
    for layers, match in (("3,conv9", "'conv9' matches no module of the model; nearest"),
                          ("5", r"layer 5 outputs \(2, 2\), not a 4-d"), ("0", "grid 64 is larger")):
        with pytest.raises(UserError, match=match):
            extract(src, out, cfg(layers=layers, grid=64 if layers == "0" else 4))
        assert not out.exists() and not partial_path(out).exists()


def test_kmeans_resume_reuses_the_dictionary_of_the_partial_file(tmp_path, monkeypatch):
    import dcgan_features.extract.sources.kmeans as km

    out = tmp_path / "k.h5"
    calls = {"n": 0}
    real_encode = km.encode

    def crash_after_one_batch(*a, **kw):
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt  # as if killed after the fit and one batch
        return real_encode(*a, **kw)

    monkeypatch.setattr(km, "encode", crash_after_one_batch)
    first = KMeansSource(5, seed=4, config=TINY_KMEANS)
    with pytest.raises(KeyboardInterrupt):
        extract(first, out, cfg())
    assert partial_path(out).exists() and not out.exists()
    monkeypatch.setattr(km, "encode", real_encode)
    monkeypatch.setattr(km, "fit_dictionary", lambda *a, **kw: pytest.fail("a resumed run fitted again"))
    again = KMeansSource(5, seed=4, config=TINY_KMEANS)
    assert extract(again, out, cfg())["state"] == "resume"
    assert torch.equal(again.fitted.centroids, first.fitted.centroids)
    test = load("synthetic", "test", image_size=32).images[:12]
    np.testing.assert_allclose(read(out)[0], encode(test, first.fitted).numpy(), rtol=1e-6)
