"""Image folders: layouts, the union of classes, the seeded test fraction, parallel decoding, bad files."""

import numpy as np
import pytest
from PIL import Image

from dcgan_features.core.errors import DatasetError
from dcgan_features.data.folder import FolderOptions, decode, stratified_test_rows
from dcgan_features.data.registry import load
from formats import write_image_folder


def test_train_and_test_folders_with_the_union_of_classes(tmp_path):
    colours = write_image_folder(tmp_path, {"train": {"cat": 3, "dog": 2, "eel": 1}, "val": {"cat": 1, "dog": 2}})
    tr = load("folder", "train", data_dir=tmp_path, image_size=8)
    te = load("folder", "test", data_dir=tmp_path, image_size=8)  # val/ stands for test/
    assert tr.classes == te.classes == ["cat", "dog", "eel"]
    assert tr.labels.tolist() == [0, 0, 0, 1, 1, 2] and te.labels.tolist() == [0, 1, 1]
    assert tuple(te.images[1, :, 4, 4].tolist()) == colours["val"]["dog"]


def test_a_test_class_absent_from_train_is_named(tmp_path):
    write_image_folder(tmp_path, {"train": {"cat": 2}, "test": {"cat": 1, "dog": 1}})
    with pytest.raises(DatasetError, match=r"class 'dog' has images in .*test/dog' but none in"):
        load("folder", "test", data_dir=tmp_path, image_size=8)


def test_a_folder_without_class_subfolders_cannot_give_a_test_split(tmp_path):
    for i in range(3):
        Image.new("RGB", (9, 9)).save(tmp_path / f"{i}.png")
    assert (load("folder", "train", data_dir=tmp_path, image_size=8).labels == -1).all()  # a GAN may train on it
    with pytest.raises(DatasetError, match=r"has images but no class subfolders: a labelled folder is DIR/<class>"):
        load("folder", "test", data_dir=tmp_path, image_size=8)


def test_a_pool_is_split_by_a_seeded_stratified_fraction(tmp_path):
    write_image_folder(tmp_path, {"": {"a": 10, "b": 20}})
    opts = FolderOptions(test_fraction=0.2, split_seed=3)
    tr, te = (load("folder", s, data_dir=tmp_path, image_size=8, folder=opts) for s in ("train", "test"))
    assert np.bincount(te.labels.numpy()).tolist() == [2, 4] and np.bincount(tr.labels.numpy()).tolist() == [8, 16]
    rows_tr, rows_te = tr.info["folder_rows_train"], te.info["folder_rows_test"]
    assert not set(rows_tr) & set(rows_te) and len(set(rows_tr) | set(rows_te)) == 30
    again = load("folder", "test", data_dir=tmp_path, image_size=8, folder=opts).info["folder_rows_test"]
    other = load("folder", "test", data_dir=tmp_path, image_size=8, folder=FolderOptions(split_seed=4))
    assert np.array_equal(again, rows_te) and not np.array_equal(other.info["folder_rows_test"], rows_te)
    assert "stratified test fraction 0.2" in te.info["folder_split"]


def test_stratified_rows_keep_one_of_each_class_on_each_side():
    labels = np.array([0, 0, 1, 1, 1, 2])
    test = stratified_test_rows(labels, 0.1, 0)
    assert sorted(labels[test].tolist()) == [0, 1]  # class 2 (one row) stays in train


def test_min_resize_then_center_crop(tmp_path):
    im = np.zeros((20, 60, 3), np.uint8)  # three vertical stripes: red | green | blue
    im[:, :20, 0], im[:, 20:40, 1], im[:, 40:, 2] = 255, 255, 255
    (tmp_path / "c").mkdir()
    Image.fromarray(im).save(tmp_path / "c" / "x.png")
    x = load("folder", "train", data_dir=tmp_path, image_size=10).images[0].numpy().astype(int)
    assert x.shape == (3, 10, 10)
    assert (x[1, :, 1:-1] == 255).all() and x[0, :, 1:-1].max() < 5 and x[2, :, 1:-1].max() < 5  # the middle third


def test_workers_decode_the_same_pixels_as_one_process(tmp_path):
    write_image_folder(tmp_path, {"": {"a": 70, "b": 70}}, fmt="jpg")
    files = sorted(tmp_path.rglob("*.jpg"))
    one, _ = decode(files, 16, FolderOptions(workers=1))
    many, _ = decode(files, 16, FolderOptions(workers=2))
    assert np.array_equal(one, many) and len(one) == 140


def test_a_corrupt_image_is_named_or_skipped_and_counted(tmp_path):
    write_image_folder(tmp_path, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    (tmp_path / "train" / "b" / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(DatasetError, match=r"train/b/1.png is not a readable image .*--skip-bad"):
        load("folder", "train", data_dir=tmp_path, image_size=8)
    said = []
    ds = load("folder", "train", data_dir=tmp_path, image_size=8, folder=FolderOptions(skip_bad=True, log=said.append))
    assert ds.labels.tolist() == [0, 0, 1] and ds.info["skipped_train"] == 1
    assert "skipped 1 unreadable image(s) of the train split" in said[0]
