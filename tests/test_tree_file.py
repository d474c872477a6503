"""Issue 11: tree files with NUL bytes (AlexeyAB's damaged cfg/9k.tree) are refused with a clear error."""
from __future__ import annotations

import pytest

from pydarknet.tree import read_tree


def test_nul_bytes_are_a_damaged_tree(tmp_path):
    good = tmp_path / "good.tree"
    good.write_bytes(b"a -1\r\nb -1\r\nc 0\r\n")
    assert read_tree(good).parent == [-1, -1, 0]
    bad = tmp_path / "bad.tree"
    bad.write_bytes(b"a -1\r\nb -1\x00\x00\x00\r\nc 0\r\n")
    with pytest.raises(ValueError, match=r"bad.tree: holds NUL bytes \(the first on line 2\): a damaged tree"):
        read_tree(bad)
