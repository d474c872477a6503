"""Checks applied to downloaded Darknet weights (the download itself needs internet, not tested)."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import make_recipe_weights

from pydarknet.published import PUBLISHED, verify


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("pub") / "yolov2-tiny-voc.weights"
    path.write_bytes(make_recipe_weights("cfg/yolov2-tiny-voc.cfg", 1))
    return path


def test_known_sizes_match_darknet_files():
    assert PUBLISHED["yolov2-voc.weights"].size() == 202_704_264
    assert PUBLISHED["yolov2-tiny-voc.weights"].size() == 63_471_560
    assert PUBLISHED["darknet19.weights"].size() == 83_427_124


def test_a_good_file_passes_and_its_digest_is_checked(tiny, tmp_path):
    item = PUBLISHED["yolov2-tiny-voc.weights"]
    digest = verify(tiny, item)
    assert len(digest) == 64
    assert verify(tiny, item, sha256=digest.upper()) == digest
    with pytest.raises(ValueError, match="differs from the expected"):
        verify(tiny, item, sha256="0" * 64)
    sums = tmp_path / "SHA256SUMS"
    sums.write_text(f"{'1' * 64}  yolov2-tiny-voc.weights\n")
    with pytest.raises(ValueError, match="recorded in"):
        verify(tiny, item, sums=sums)


def test_truncated_or_foreign_files_are_rejected(tiny, tmp_path):
    short = tmp_path / "short.weights"
    short.write_bytes(tiny.read_bytes()[:-4])
    with pytest.raises(ValueError, match="63471556 bytes, but yolov2-tiny-voc.weights"):
        verify(short, PUBLISHED["yolov2-tiny-voc.weights"])
    # the right size but garbage: the load into the cfg rejects it (negative BN variance)
    junk = tmp_path / "junk.weights"
    data = np.frombuffer(tiny.read_bytes(), np.uint8).copy()
    data[20:] = np.random.default_rng(0).integers(0, 256, data.size - 20)
    junk.write_bytes(data.tobytes())
    with pytest.raises(Exception, match="not for"):
        verify(junk, PUBLISHED["yolov2-tiny-voc.weights"])
