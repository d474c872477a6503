"""``classifier train`` through its data path (.data, labels from paths, loader, engine) against
Darknet's three iterations of darknet19_train_synth (E4), and its handling of bad pictures.

With ``augment=False`` the loader letterboxes, which is how the fixture's inputs were made
(Darknet's random crops bypassed); the batches are shuffled passes over the two pictures.
Tolerances are test_classifier_train's: iteration 1 loss within 1e-4 relative (measured
there 6.6e-7), iteration 2 within 1e-2 (2.3e-5), iteration 3 within 1e-5 absolute.
"""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest
import torch
from conftest import golden_dir, make_recipe_weights

from pydarknet.classifier_augment import CropArgs, augment_classification, random_augment_args, rotate_crop
from pydarknet.classifier_train import ClassificationDataset, train_classifier, usable_pictures
from pydarknet.data import DataError
from pydarknet.image import letterbox, load_image
from pydarknet.network import Darknet
from pydarknet.trainloop import TrainConfig

E4 = golden_dir() / "darknet19_train_synth"
CFG = E4 / "darknet19_64_train.cfg"


def _dataset_files(tmp_path, pictures):
    labels = [f"c{i:03d}_" for i in range(1000)]
    (tmp_path / "labels.list").write_text("\n".join(labels) + "\n")
    listed = []
    for name, cls in pictures:
        folder = tmp_path / "pics" / labels[cls]
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(golden_dir() / "images" / f"{name}.png", folder / f"{name}.png")
        listed.append(str(folder / f"{name}.png"))
    (tmp_path / "train.list").write_text("\n".join(listed) + "\n")
    (tmp_path / "t.data").write_text(f"classes=1000\ntrain={tmp_path / 'train.list'}\n"
                                     f"labels={tmp_path / 'labels.list'}\nbackup={tmp_path / 'backup'}\n")
    return tmp_path / "t.data", listed


@pytest.mark.slow
def test_darknet19_three_iterations_through_the_data_path(tmp_path):
    data, listed = _dataset_files(tmp_path, [("synth1", 3), ("synth2", 7)])
    inputs = np.load(E4 / "inputs.npz")
    for path, ref in zip(listed, inputs["input"]):      # the loader's pictures are the fixture's
        assert np.array_equal(letterbox(load_image(path), 64, 64).numpy(), ref)
    (tmp_path / "start.weights").write_bytes(make_recipe_weights(CFG, 3))
    lines = []
    config = TrainConfig(data=str(data), cfg=str(CFG), weights=str(tmp_path / "start.weights"), workers=0, seed=1,
                         progress=False, exact=True, augment=False, extra={"replacement": False, "iterations": 3})
    result = train_classifier(config, out=lines.append)
    assert result.iterations == 3 and result.seen == 6 and not result.interrupted
    with open(tmp_path / "backup" / "darknet19_64_train_log.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    ret = np.load(E4 / "cpu.npz")["train_network_return"]
    assert losses[0] == pytest.approx(float(ret[0]), rel=1e-4)
    assert losses[1] == pytest.approx(float(ret[1]), rel=1e-2)
    assert abs(losses[2] - float(ret[2])) <= 1e-5
    assert any(line.startswith("3, 3.000: ") for line in lines)          # Darknet's classifier line
    assert (tmp_path / "backup" / "darknet19_64_train_3.weights").is_file()   # epoch checkpoints


def test_pictures_with_no_label_or_two_are_left_out_by_name():
    kept, problems = usable_pictures(["/a/ants/1.jpg", "/a/bees/ants/2.jpg", "/a/wasps/3.jpg"], ["ants", "bees"], 2)
    assert kept == ["/a/ants/1.jpg"]
    assert problems == ["/a/bees/ants/2.jpg: matches 2 labels (ants, bees)", "/a/wasps/3.jpg: matches no label"]


def test_classes_must_match_the_network(tmp_path):
    data, _ = _dataset_files(tmp_path, [("synth1", 3)])
    data.write_text(data.read_text().replace("classes=1000", "classes=10"))
    config = TrainConfig(data=str(data), cfg=str(CFG), workers=0, progress=False, extra={"iterations": 1})
    with pytest.raises(DataError, match="classes=10 but the last layer"):
        train_classifier(config, out=lambda line: None)


def test_augmentation_draws_and_geometry():
    img = torch.rand(3, 40, 60)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = random_augment_args(rng, 60, 40, 7., .75, 32, 48, 32, 32)
        assert abs(a.rad) <= 7 * np.pi / 180 + 1e-6 and 1 / .75 - 1e-6 >= a.aspect >= .75 - 1e-6
        short = 40 if 40 < 60 * a.aspect else int(np.float32(60) * np.float32(a.aspect))
        assert 32 <= round(a.scale * short) <= 48
    out = augment_classification(img, 32, 32, rng, low=32, high=48, angle=7, aspect=.75, hue=.1,
                                 saturation=.75, exposure=.75)
    assert out.shape == (3, 32, 32) and 0 <= out.min() and out.max() <= 1
    # no rotation, scale 1, no shift: the centre window; a window past the edge is black
    centre = rotate_crop(img, CropArgs(0., 1., 20, 10, 0., 0., 1.))
    assert torch.equal(centre, img[:, 15:25, 20:40])
    outside = rotate_crop(img, CropArgs(0., 1., 4, 4, 100., 0., 1.))
    assert outside.abs().max() == 0


def test_dataset_samples_are_letterboxed_truth_rows(tmp_path):
    net = Darknet(CFG)
    data, listed = _dataset_files(tmp_path, [("synth1", 3), ("synth2", 7)])
    truths = torch.zeros(2, 1000)
    truths[0, 3] = truths[1, 7] = 1
    ds = ClassificationDataset(listed, truths, 64, 64, net.options, augment=False, seed=0)
    image, truth = ds[1]
    assert image.shape == (3, 64, 64) and int(truth.argmax()) == 7
    assert (ds.low, ds.high) == (128, 448)      # min_crop/max_crop of the cfg


def test_stopbackward_freezes_the_layers_up_to_it():
    text = ("[net]\nbatch=2\nwidth=4\nheight=4\nchannels=3\nlearning_rate=0.1\ndecay=0\nmomentum=0\n"
            "[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\nstopbackward=1\n"
            "[convolutional]\nfilters=2\nsize=1\nactivation=linear\n[avgpool]\n[softmax]\n")
    from pydarknet.train import Trainer
    net = Darknet("s.cfg", text=text)
    frozen, head = net.layers[0].weight.detach().clone(), net.layers[1].weight.detach().clone()
    Trainer(net).step(torch.rand(2, 3, 4, 4), torch.tensor([[1., 0.], [0., 1.]]))
    assert torch.equal(net.layers[0].weight, frozen) and not torch.equal(net.layers[1].weight, head)
