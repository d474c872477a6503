"""tools/voc_label.py (pydarknet.voc): VOC XML -> Darknet labels, lists, .names, .data.

Round trip back to the XML boxes on the raccoon set (../shared, third-party, skipped when
absent) and on a VOC-layout set generated here, with the awkward cases a real set has."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from pydarknet.data import label_path, read_labels
from pydarknet.commands import voc_label as voc_label_cmd
from pydarknet import voc
from pydarknet.data import read_data_file, read_list, read_names

RACCOON = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "raccoon"


def xml_boxes(xml_path, classes):
    """(class_id, xmin, ymin, xmax, ymax, difficult) of every object, straight from the XML."""
    root = ET.parse(xml_path).getroot()
    out = []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        d = obj.find("difficult")
        out.append((classes.index(obj.find("name").text), *(float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")),
                    int(d.text) if d is not None else 0))
    return out


def check_round_trip(list_file, ann_dir, classes, size_of):
    """Every listed image's label file maps back to its non-difficult XML boxes within 1 px."""
    n_boxes = 0
    for img in read_list(list_file):
        lp = label_path(img, darknet_exact=True)
        assert Path(lp).is_file(), lp
        rows = read_labels(lp, missing_ok=True).astype(np.float64)
        W, H = size_of(img)
        back = sorted((int(c), *voc.unconvert_box((W, H), (x, y, w, h))) for c, x, y, w, h in rows)
        want = sorted(b[:5] for b in xml_boxes(Path(ann_dir) / (Path(img).stem + ".xml"), classes) if not b[5])
        assert len(back) == len(want), img
        for got, exp in zip(back, want):
            assert got[0] == exp[0]
            assert np.max(np.abs(np.array(got[1:]) - np.array(exp[1:]))) < 1.0, (img, got, exp)
            assert np.allclose(got[1:], exp[1:], atol=1e-6)  # in fact exact up to rounding
        n_boxes += len(rows)
    return n_boxes


def test_convert_box_is_voc_label_arithmetic():
    # scripts/voc_label.py: x = ((xmin + xmax)/2 - 1)/w, w = (xmax - xmin)/w, same for y/h
    x, y, w, h = voc.convert_box((650, 417), (81.0, 522.0, 88.0, 408.0))
    assert (x, y, w, h) == (((81 + 522) / 2.0 - 1) * (1.0 / 650), ((88 + 408) / 2.0 - 1) * (1.0 / 417),
                            (522 - 81) * (1.0 / 650), (408 - 88) * (1.0 / 417))
    assert voc.unconvert_box((650, 417), (x, y, w, h)) == pytest.approx((81, 88, 522, 408), abs=1e-9)


def test_label_path_follows_darknet():
    assert label_path("/d/VOC2007/JPEGImages/000001.jpg", darknet_exact=True) == "/d/VOC2007/labels/000001.txt"
    assert label_path("/d/x/JPEGImages/a.png", darknet_exact=True) == "/d/x/labels/a.txt"
    assert label_path("/d/images/a.JPEG", darknet_exact=True) == "/d/labels/a.txt"
    # Darknet replaces the first 'images' anywhere in the path, and not '.jpeg'
    assert label_path("/home/images/v/JPEGImages/a.jpg", darknet_exact=True) == "/home/labels/v/labels/a.txt"
    assert label_path("/d/JPEGImages/a.jpeg", darknet_exact=True) == "/d/labels/a.jpeg"
    assert voc.image_id("/d/JPEGImages/2008_000001.jpg") == "2008_000001"
    assert voc.image_id("/d/a.b.jpg") == "a"  # basecfg stops at the first dot


@pytest.fixture(scope="module")
def raccoon():
    if not (RACCOON / "Annotations").is_dir():
        pytest.skip(f"raccoon dataset not present at {RACCOON} (third-party data, kept in ../shared only)")
    return RACCOON


def test_raccoon_round_trip(raccoon, tmp_path):
    res = voc.convert_dataset(raccoon, labels_root=tmp_path, show_progress=False, report=lambda s: None)
    assert res.ok, res.problems
    assert res.classes == ["raccoon"]
    assert res.sets == {"train": 160, "val": 40}
    assert (tmp_path / "JPEGImages").is_symlink()
    opts = read_data_file(res.data_file)
    assert opts["classes"] == "1" and opts["train"] == str(tmp_path / "train.txt")
    assert opts["valid"] == str(tmp_path / "val.txt") and read_names(opts["names"]) == ["raccoon"]
    assert opts["valid_truth"] == str(tmp_path / "val_truth.json") and Path(opts["backup"]).is_dir()
    train = read_list(opts["train"])
    assert all(p.startswith(str(tmp_path / "JPEGImages")) and os.path.isfile(p) for p in train)

    def size_of(img):
        r = ET.parse(raccoon / "Annotations" / (Path(img).stem + ".xml")).getroot()
        return int(r.find("size/width").text), int(r.find("size/height").text)

    n = sum(check_round_trip(res.list_files[s], raccoon / "Annotations", ["raccoon"], size_of)
            for s in ("train", "val"))
    assert n == res.objects == 217
    truth = voc.read_truth_json(res.truth_files["val"])
    assert len(truth["images"]) == 40 and sum(len(e["objects"]) for e in truth["images"]) > 0
    # written as voc_label.py writes them (str() of the floats)
    first = train[0]
    ann = voc.parse_annotation(raccoon / "Annotations" / (Path(first).stem + ".xml"))
    o = ann.objects[0]
    bb = voc.convert_box((ann.width, ann.height), (o.xmin, o.xmax, o.ymin, o.ymax))
    assert Path(label_path(first, darknet_exact=True)).read_text().splitlines()[0] == "0 " + " ".join(str(a) for a in bb)


# --------------------------------------------------------------------------- a set never seen
def _xml(filename, size, objects):
    s = "" if size is None else (f"<size><width>{size[0]}</width><height>{size[1]}</height>"
                                 f"<depth>3</depth></size>")
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>{d}</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects)
    return f"<annotation><folder>x</folder><filename>{filename}</filename>{s}{objs}</annotation>\n"


def make_voc(root: Path) -> dict:
    """A small VOC-layout set: difficult objects, 0-based boxes touching the border, a bad XML,
    an unknown class, a box outside the image, a missing <size>, a missing annotation, a
    .jpeg picture Darknet cannot find labels for, and VOC's two-column per-class set files."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    images = {  # id: (ext, (W, H), objects or raw xml text, write <size>)
        "a1": (".jpg", (120, 90), [("cat", (10, 12, 60, 70), 0), ("dog", (50, 20, 119, 89), 1)], True),
        "a2": (".png", (100, 100), [("dog", (0, 0, 99, 99), 0), ("bird", (30, 30, 45, 50), 0),
                                   ("bird", (80, 80, 140, 95), 0)], True),  # the last is outside
        "a3": (".jpg", (64, 48), "<annotation><size><width>64</width>", True),  # bad XML
        "a4": (".png", (80, 60), [("zebra", (5, 5, 20, 20), 0), ("cat", (1, 1, 80, 60), 0)], True),
        "a5": (".jpg", (70, 50), [("bird", (3, 4, 33, 44), 0)], False),  # no <size>
        "a6": (".jpeg", (40, 40), [("cat", (2, 2, 30, 30), 0)], True),
        "a7": (".jpg", (50, 50), [("dog", (10, 10, 10, 30), 0), ("cat", (5, 6, 45, 46), 1)], True),
    }
    for ident, (ext, (W, H), objs, with_size) in images.items():
        cv2.imwrite(str(root / "JPEGImages" / f"{ident}{ext}"), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))
        text = objs if isinstance(objs, str) else _xml(f"{ident}{ext}", (W, H) if with_size else None, objs)
        (root / "Annotations" / f"{ident}.xml").write_text(text)
    (root / "ImageSets/Main/train.txt").write_text("a1\na2\na3\na4\n")
    (root / "ImageSets/Main/val.txt").write_text("a5\na6\na7\nmissing8\n")
    (root / "ImageSets/Main/cat_train.txt").write_text("a1  1\na2 -1\n")
    return {k: v[1] for k, v in images.items()}


def test_unseen_voc_set(tmp_path, capsys):
    src = tmp_path / "myset"
    sizes = make_voc(src)
    os.chmod(src, 0o555)  # like ../shared: nothing may be written into the dataset
    try:
        work = tmp_path / "work"
        rc = voc_label_cmd.main([str(src), "--labels-root", str(work), "--classes", "dog,cat,bird", "-q"])
    finally:
        os.chmod(src, 0o755)
    err = capsys.readouterr().err
    assert rc == 1  # something was skipped
    problems = err.strip().splitlines()
    assert any("a3.xml" in ln and "bad XML" in ln for ln in problems)
    assert any("a4.xml" in ln and "unknown class 'zebra'" in ln for ln in problems)
    assert any("a2.xml" in ln and "outside" in ln for ln in problems)
    assert any("a7.xml" in ln and "empty box" in ln for ln in problems)
    assert any("missing8" in ln for ln in problems)
    assert any("a6" in ln and "Darknet would look for the labels" in ln for ln in problems)
    assert not any(ln.startswith("error") for ln in problems)
    assert not (src / "labels").exists()

    classes = ["dog", "cat", "bird"]
    assert read_names(work / "myset.names") == classes
    opts = read_data_file(work / "myset.data")
    assert opts["classes"] == "3" and opts["train"] == str(work / "train.txt") and opts["valid"] == str(work / "val.txt")
    assert sorted(read_list(work / "train.txt")) == sorted(str(work / "JPEGImages" / f) for f in ("a1.jpg", "a2.png", "a4.png"))
    assert read_list(work / "val.txt") == [str(work / "JPEGImages" / f) for f in ("a5.jpg", "a7.jpg")]
    assert not (work / "cat_train.txt").exists()  # per-class set files are not image sets

    def size_of(img):
        return sizes[Path(img).stem]

    def filtered_ann_dir():
        # the XML boxes that should survive: unknown/outside/empty ones removed
        d = tmp_path / "expected"
        d.mkdir(exist_ok=True)
        keep = {"a1": [("cat", (10, 12, 60, 70), 0), ("dog", (50, 20, 119, 89), 1)],
                "a2": [("dog", (0, 0, 99, 99), 0), ("bird", (30, 30, 45, 50), 0)],
                "a4": [("cat", (1, 1, 80, 60), 0)],
                "a5": [("bird", (3, 4, 33, 44), 0)],
                "a7": [("cat", (5, 6, 45, 46), 1)]}
        for k, objs in keep.items():
            (d / f"{k}.xml").write_text(_xml(k, sizes[k], objs))
        return d

    ann = filtered_ann_dir()
    n = sum(check_round_trip(work / f"{s}.txt", ann, classes, size_of) for s in ("train", "val"))
    assert n == 5
    assert Path(label_path(str(work / "JPEGImages" / "a7.jpg"), darknet_exact=True)).read_text() == ""  # only difficult
    # difficult objects: out of the labels, in the truth files
    truth = voc.read_truth_json(work / "val_truth.json")
    a7 = next(e for e in truth["images"] if e["id"] == "a7")
    assert a7["objects"] == [[1, 5.0, 6.0, 45.0, 46.0, 1]] and (a7["width"], a7["height"]) == (50, 50)
    a5 = next(e for e in truth["images"] if e["id"] == "a5")
    assert (a5["width"], a5["height"]) == (70, 50)  # measured from the picture
    tr = voc.read_truth_json(work / "train_truth.json")
    a1 = next(e for e in tr["images"] if e["id"] == "a1")
    assert [o[-1] for o in a1["objects"]] == [0, 1] and a1["objects"][1][0] == 0
    assert tr["classes"] == classes


def test_default_classes_and_in_place(tmp_path):
    src = tmp_path / "set2"
    make_voc(src)
    (src / "Annotations" / "a3.xml").write_text(_xml("a3.jpg", (64, 48), [("cat", (1, 1, 10, 10), 0)]))
    res = voc.convert_dataset(src, show_progress=False, report=lambda s: None, clip=True)
    # names sorted, zebra included; labels in VOC_ROOT/labels; a2's outside bird clipped
    assert res.classes == ["bird", "cat", "dog", "zebra"]
    assert (src / "labels" / "a1.txt").is_file() and (src / "set2.data").is_file()
    assert read_list(src / "train.txt")[0] == str(src / "JPEGImages" / "a1.jpg")
    rows = read_labels(src / "labels" / "a2.txt", missing_ok=True)
    assert len(rows) == 3
    x1, y1, x2, y2 = voc.unconvert_box((100, 100), rows[2, 1:])
    assert (x1, y1, x2, y2) == pytest.approx((80, 80, 100, 95))
    assert not any("a2.xml" in p for p in res.problems)
    assert any("missing8" in p for p in res.problems)
    assert len(res.problems) == 3  # missing8, a6 (.jpeg), a7's empty box
    # explicit sets and the subset mode
    res = voc.convert_dataset(src, out=tmp_path / "o", sets=["train"], classes="cat", ignore_unknown=True,
                              name="cats", show_progress=False, report=lambda s: None)
    assert res.ok and res.sets == {"train": 4} and res.classes == ["cat"]
    assert read_data_file(tmp_path / "o" / "cats.data")["valid"] == str(tmp_path / "o" / "train.txt")
    assert json.loads((tmp_path / "o" / "train_truth.json").read_text())["classes"] == ["cat"]


def test_errors(tmp_path):
    with pytest.raises(voc.VocError, match="no Annotations"):
        voc.convert_dataset(tmp_path)
    assert voc_label_cmd.main([str(tmp_path), "-q"]) == 2
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations" / "x.xml").write_text("not xml")
    with pytest.raises(voc.VocError, match="bad XML"):
        voc.parse_annotation(tmp_path / "Annotations" / "x.xml")


def test_labels_root_path_darknet_cannot_use(tmp_path):
    src = tmp_path / "set3"
    make_voc(src)
    with pytest.raises(voc.VocError, match="first 'images' or 'raw'"):
        voc.convert_dataset(src, labels_root=tmp_path / "my_images" / "w", show_progress=False)
