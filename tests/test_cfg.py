"""The cfg grammar: Darknet's files read unchanged, bad input reported by file and line."""
from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import golden_dir, shared_golden_dir

from pydarknet import BuildError, CfgError, CfgWarning, Darknet
from pydarknet.cfg import parse, parse_file

NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"


def all_cfg_files():
    files = sorted(golden_dir().glob("*/*.cfg")) + sorted(Path(__file__).resolve().parents[1].glob("cfg/*.cfg"))
    shared = shared_golden_dir()
    if shared is not None:
        files += sorted((shared / "cfg-original").glob("*.cfg"))
    return files


@pytest.mark.parametrize("path", all_cfg_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_known_cfg_parses_and_builds_without_warnings(path, tmp_path, monkeypatch):
    if path.parent.name == "cfg-original" and "9000" in path.name:
        # yolo9000.cfg and darknet9000.cfg open data/9k.tree relative to the working directory.
        (tmp_path / "data").mkdir()
        for f in (shared_golden_dir() / "data-original").iterdir():
            (tmp_path / "data" / f.name).write_bytes(f.read_bytes())
        monkeypatch.chdir(tmp_path)
    elif path.name == "yolo9000.cfg":  # ours reads data/9k.tree from $PYDARKNET_DATA: a flat stand-in
        (tmp_path / "9k.tree").write_text("".join(f"n{i} -1\n" for i in range(9418)))
        monkeypatch.setenv("PYDARKNET_DATA", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sections = parse_file(path)
        assert sections[0].kind == "net"
        Darknet(path)


def test_grammar_free_spacing_comments_lists_and_aliases():
    text = ("; leading comment\n[network]\n  width = 64   \nheight=64 # trailing\nchannels=3;also\n"
            "[conv]\nfilters = 8\nsize=3\nactivation=leaky\n\n[max]\nsize=2\nstride=2\n"
            "[convolutional]\nfilters=30\nsize=1\nactivation=linear\n"
            "[region]\nanchors =  1.0, 2.0 ,3,4,\nnum=2\nclasses=10\n")
    s = parse(text)
    assert [x.kind for x in s] == ["net", "convolutional", "maxpool", "convolutional", "region"]
    assert s[0].get_int("width") == 64 and s[0].get_int("height") == 64 and s[0].get_int("channels") == 3
    assert s[4].get_list("anchors") == [1.0, 2.0, 3.0, 4.0]
    assert s[1].options["filters"].line == 7
    net = Darknet("x.cfg", text=text)
    assert net.layers[3].anchors == [1.0, 2.0, 3.0, 4.0]


def test_repeated_sections_and_first_value_wins():
    text = NET + "[maxpool]\nsize=2\nstride=2\nsize=3\n[maxpool]\nsize=2\nstride=2\n"
    with pytest.warns(CfgWarning, match=r"<string>:8: 'size' repeated.*line 6"):
        s = parse(text)
    assert s[1].get_int("size") == 2 and len(s) == 3


def test_each_bad_line_is_reported_with_its_number():
    text = NET + "this is not an option\n[convolutional]\nfilters=4\n=3\n[frobnicate]\n[lrn]\n"
    with pytest.raises(CfgError) as e:
        parse(text, "bad.cfg")
    msg = str(e.value)
    assert "bad.cfg:5: not a [section] or key=value line: 'this is not an option'" in msg
    assert "bad.cfg:8: not a [section]" in msg
    assert "bad.cfg:9: [frobnicate] is not a Darknet section" in msg
    assert "bad.cfg:10: [lrn] is a Darknet section pydarknet does not implement" in msg


@pytest.mark.parametrize("body,where,what", [
    ("[convolutional]\nfilters=3.5\n", ":6", "filters=3.5: expected an integer"),
    ("[convolutional]\nfilters=4\nactivation=swoosh\n", ":7", "activation=swoosh: expected one of"),
    ("[maxpool]\nsize=two\n", ":6", "size=two: expected an integer"),
    ("[region]\nanchors=1,x\n", ":6", "anchors=1,x: expected a comma-separated list of numbers"),
    ("[route]\n", ":5", "needs 'layers='"),
])
def test_values_of_the_wrong_type(body, where, what):
    with pytest.raises(CfgError, match=rf"x\.cfg{where}: .*{what}"):
        Darknet("x.cfg", text=NET + body)


def test_options_darknet_would_ignore_are_warned():
    with pytest.warns(CfgWarning, match=r"x\.cfg:7: unused field 'colour' in \[maxpool\]"):
        Darknet("x.cfg", text=NET + "[maxpool]\nsize=2\ncolour=red\n")


def test_first_section_must_be_net():
    with pytest.raises(CfgError, match="first section must be"):
        parse("[convolutional]\nfilters=3\n")
    with pytest.raises(CfgError, match="no sections"):
        parse("# only a comment\n")
    with pytest.raises(CfgError, match="needs width"):
        Darknet("x.cfg", text="[net]\nwidth=32\n[maxpool]\n")


@pytest.mark.parametrize("body,match", [
    ("[convolutional]\nfilters=4\n[route]\nlayers=-3\n", r"x\.cfg:7: layer 1 \[route\]: layers=-3 refers to layer -2"),
    ("[convolutional]\nfilters=4\n[route]\nlayers=5\n", r"layer 1 \[route\]: layers=5 refers to layer 5"),
    ("[convolutional]\nfilters=4\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n",
     r"x\.cfg:10: layer 2 \[route\]: cannot concatenate layer 1 \(16x16\) with layer 0 \(32x32\)"),
    ("[convolutional]\nfilters=100\nsize=1\n[region]\nclasses=20\nnum=5\n",
     r"layer 1 \[region\]: the previous layer gives 100 channels but num\*\(classes\+coords\+1\) = 5\*\(20\+4\+1\) = 125"),
    ("[convolutional]\nfilters=6\n[reorg]\nstride=2\n", r"layer 1 \[reorg\]: 6 channels are not divisible"),
])
def test_inconsistent_graphs_fail_at_build_with_index_and_line(body, match):
    with pytest.raises(BuildError, match=match):
        Darknet("x.cfg", text=NET + body)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(CfgError, match="no such cfg file"):
        parse_file("/nonexistent/yolo.cfg")
    with pytest.raises(CfgError, match="no such cfg file"):
        Darknet("/nonexistent/yolo.cfg")
    binary = tmp_path / "yolo.weights.cfg"
    binary.write_bytes(b"[net]\n\xff\xfe\x00\x01")
    with pytest.raises(CfgError, match=r"yolo\.weights\.cfg: not a text file"):
        Darknet(binary)


def test_user_errors_reach_the_cli_without_traceback(tmp_path):
    bad = tmp_path / "bad.cfg"
    bad.write_text(NET + "[convolutional]\nfilters=4\nsize=3\nwhat\n")
    r = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "tools" / "detect.py"),
                        str(bad), "w.weights", "x.png"], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    assert f"{bad}:8: not a [section] or key=value line" in r.stderr and "Traceback" not in r.stderr
