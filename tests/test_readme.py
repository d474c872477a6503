"""The README's shell commands, checked against the programs they call, so the two cannot drift.

Every command in a ```bash block is taken apart at ``&&``: ``pip install`` lines must name
extras that pyproject.toml defines; ``python -m pytest`` is what ``.ci/run`` calls; every
``pydarknet ...`` and ``python tools/X.py ...`` command is parsed by that program's own argument
parser (a bad option, a missing argument or an unknown verb fails here).  The cheap ones (data
set-up, anchors, the demo) also run for real, in a temporary folder.
"""
from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from pydarknet import commands

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# the training walkthrough's data steps (on the synthetic shapes set), run for real
RUN_FOR_REAL = ("tools/make_shapes.py shapes_voc", "pydarknet voc_label shapes_voc", "pydarknet anchors data/shapes")


def shell_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    lines = [line.split(" #")[0].strip() for block in blocks for line in block.splitlines()]
    return [part.strip() for line in lines if line for part in line.split("&&")]


COMMANDS = shell_commands()


class Parsed(Exception):
    """Raised instead of running the program once its arguments parsed."""


def parse_only(monkeypatch, argv: list[str]) -> argparse.Namespace:
    """Run the command's entry point with argparse stopped right after a successful parse."""
    def stop(self, *a, **k):
        ns = original(self, *a, **k)
        raise Parsed(ns)
    original = argparse.ArgumentParser.parse_known_args
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", stop)
    original_intermixed = argparse.ArgumentParser.parse_known_intermixed_args

    def stop_intermixed(self, *a, **k):
        monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", original)
        ns = original_intermixed(self, *a, **k)
        raise Parsed(ns)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_intermixed_args", stop_intermixed)
    with pytest.raises(Parsed) as parsed:
        entry(argv)()
    return parsed.value.args[0]


def entry(argv: list[str]):
    """The function a README command line calls."""
    if argv[0] == "pydarknet":
        return lambda: commands.main(argv[1:])
    tool = Path(argv[1])
    assert argv[0] == "python" and tool.parts[0] == "tools", argv
    assert (ROOT / tool).is_file(), f"README names {tool}, which does not exist"
    module = tool.stem
    if module in ("make_shapes", "download_weights"):
        import runpy
        ns = runpy.run_path(str(ROOT / tool))
        return lambda: ns["main"](argv[2:])
    mod = __import__(f"pydarknet.commands.{module}", fromlist=["main"])
    return lambda: mod.main(argv[2:])


def test_readme_has_the_two_setup_commands():
    install_demo, install_tests = COMMANDS[0:2], COMMANDS[2:4]
    assert install_demo == ["pip install torch==2.13.0 -e .", "pydarknet demo"]
    assert install_tests == ["pip install torch==2.13.0 -e '.[test]'", "python -m pytest -q"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m pip install --quiet --disable-pip-version-check torch==2.13.0 -e '.[test]'" in ci
    assert ci.rstrip().endswith("python3 -m pytest -q")


def test_pip_extras_exist():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for cmd in COMMANDS:
        for extra in re.findall(r"\.\[(\w+)\]", cmd):
            assert extra in extras, cmd


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.startswith(("pydarknet", "python tools/"))])
def test_command_parses(cmd, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    parse_only(monkeypatch, shlex.split(cmd))


@pytest.mark.slow
def test_data_commands_run(tmp_path):
    """The training walkthrough's data steps, run as written (from a folder with cfg/)."""
    (tmp_path / "cfg").symlink_to(ROOT / "cfg")
    ran = 0
    for cmd in COMMANDS:
        if not any(k in cmd for k in RUN_FOR_REAL):
            continue
        argv = shlex.split(cmd)
        if argv[0] == "python":
            argv = [sys.executable, str(ROOT / argv[1]), *argv[2:]]
        else:
            argv = [sys.executable, "-m", "pydarknet", *argv[1:]]
        p = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, (cmd, p.stderr)
        ran += 1
    assert ran == 3
    assert (tmp_path / "data" / "shapes" / "shapes_voc.data").is_file()
