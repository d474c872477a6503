"""Shared test helpers: where the golden Darknet fixtures live."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent

SHARED_SKIP_REASON = (
    "../shared/golden not present: photo-based fixtures are third-party and not committed"
)


def golden_dir() -> Path:
    """The committed golden fixtures (`_synth` sets and synthetic images)."""
    return TESTS_DIR / "data" / "golden"


def shared_golden_dir() -> Path | None:
    """The optional full golden set (photo-based fixtures), or None when absent.

    Looked up in ``$PYDARKNET_SHARED`` (the ``shared`` folder or its ``golden``
    subfolder) if set, otherwise in ``shared/golden`` next to the repository.
    """
    env = os.environ.get("PYDARKNET_SHARED")
    base = Path(env) if env else TESTS_DIR.parents[1] / "shared"
    for cand in (base / "golden", base):
        if (cand / "images").is_dir():
            return cand
    return None


@pytest.fixture
def golden() -> Path:
    return golden_dir()


@pytest.fixture
def shared_golden() -> Path:
    """The photo-based golden folder; skips the test when it is absent."""
    d = shared_golden_dir()
    if d is None:
        pytest.skip(SHARED_SKIP_REASON)
    return d


# --- golden inference sets -----------------------------------------------------
import json  # noqa: E402
import sys  # noqa: E402

# (set, seed) of every inference fixture; the photo-based ones are read from ../shared only.
SYNTH_SETS = ["tiny160_synth", "mini_yolov2_synth", "darknet19_64_synth"]
PHOTO_SETS = ["tiny160", "mini_yolov2", "darknet19_64"]


def set_dir(name: str) -> Path | None:
    """Folder of a golden set: committed for the _synth sets, ../shared for photo sets."""
    if name.endswith("_synth"):
        return golden_dir() / name
    shared = shared_golden_dir()
    return shared / name if shared is not None else None


def manifest(name: str) -> dict:
    return json.loads((set_dir(name) / "manifest.json").read_text())


def set_cfg(name: str) -> Path:
    return set_dir(name) / manifest(name)["cfg"]["file"]


def set_runs(name: str) -> list[str]:
    return list(manifest(name)["runs"])


def inference_cases() -> list:
    """pytest params (set, run) for every inference fixture; photo sets skip when absent."""
    cases = []
    for name in SYNTH_SETS + PHOTO_SETS:
        if set_dir(name) is None:
            cases.append(pytest.param(name, None, marks=pytest.mark.skip(reason=SHARED_SKIP_REASON),
                                      id=f"{name}"))
        else:
            cases += [pytest.param(name, run, id=f"{name}-{run}") for run in set_runs(name)]
    return cases


def make_recipe_weights(cfg, seed: int) -> bytes:
    """Darknet weights from the golden recipe (make_weights.py, committed beside the fixtures)."""
    sys.path.insert(0, str(golden_dir()))
    try:
        from make_weights import make_weights
    finally:
        sys.path.pop(0)
    return make_weights(str(cfg), int(seed))


@pytest.fixture(scope="session")
def recipe_weights(tmp_path_factory):
    """recipe_weights(cfg, seed) -> path of the recipe weights file (made once per session)."""
    cache: dict = {}

    def get(cfg, seed):
        key = (str(cfg), int(seed))
        if key not in cache:
            path = tmp_path_factory.mktemp("weights") / f"{Path(cfg).stem}_{seed}.weights"
            path.write_bytes(make_recipe_weights(cfg, seed))
            cache[key] = path
        return cache[key]
    return get


@pytest.fixture(scope="session")
def golden_net(recipe_weights):
    """golden_net(set, exact=False) -> the set's network in eval mode with its recipe weights (cached)."""
    from pydarknet import Darknet
    cache: dict = {}

    def get(name, exact=False):
        if (name, exact) not in cache:
            m = manifest(name)
            cfg = set_cfg(name)
            net = Darknet(cfg, exact=exact).eval()
            net.load_weights(recipe_weights(cfg, m["weights"]["seed"]))
            cache[name, exact] = net
        return cache[name, exact]
    return get
