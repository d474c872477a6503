"""Darknet ``.cfg`` text -> a list of :class:`Section` objects.

A pyparsing grammar reads one line at a time, so that every bad line is reported
with its number and the rest of the file is still checked.  Values are kept as
text; layers ask for them with the typed getters (``get_int``, ``get_float``,
``get_list`` ...), which turn a wrong type into a :class:`CfgError` naming file
and line, and remember which keys were used so that the unused ones can be
reported as Darknet does ("Unused field").
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyparsing as pp

__all__ = ["CfgError", "CfgWarning", "Option", "Section", "parse", "parse_file", "read_cfg_text",
           "SECTION_ALIASES", "canonical_kind"]


class CfgError(ValueError):
    """A user error in a cfg file; the message names the file and line."""


class CfgWarning(UserWarning):
    """Something Darknet would silently accept or ignore."""


# Darknet's section names and their aliases (parser.c string_to_layer_type).
SECTION_ALIASES = {
    "net": "net", "network": "net",
    "convolutional": "convolutional", "conv": "convolutional",
    "maxpool": "maxpool", "max": "maxpool",
    "avgpool": "avgpool", "avg": "avgpool",
    "softmax": "softmax", "soft": "softmax",
    "connected": "connected", "conn": "connected",
    "route": "route", "reorg": "reorg", "region": "region", "cost": "cost",
    "dropout": "dropout", "shortcut": "shortcut", "upsample": "upsample", "yolo": "yolo",
    # pjreddie sections added with the zoo (issue 11)
    "crop": "crop", "detection": "detection", "local": "local", "batchnorm": "batchnorm",
    # AlexeyAB-only sections (their presence makes a cfg AlexeyAB-flavoured)
    "gaussian_yolo": "gaussian_yolo", "sam": "sam", "scale_channels": "scale_channels",
    "reorg3d": "reorg3d", "local_avgpool": "local_avgpool", "local_avg": "local_avgpool",
    "contrastive": "contrastive",
    "empty": "empty", "silence": "empty",
}
# Section kinds that only AlexeyAB's Darknet reads.
ALEXEYAB_SECTIONS = {"gaussian_yolo", "sam", "scale_channels", "reorg3d", "local_avgpool", "contrastive",
                     "empty"}
# Sections the reference Darknet knows but pydarknet does not build.
DARKNET_ONLY = {"iseg", "deconv", "deconvolutional", "activation", "logistic", "l2norm",
                "lrn", "normalization", "history", "implicit", "rnn", "gru", "lstm", "crnn", "conv_lstm"}


def canonical_kind(name: str) -> str | None:
    return SECTION_ALIASES.get(name.lower())


# --- grammar -----------------------------------------------------------------
# Darknet strips every blank from a line before reading it, so blanks are free
# anywhere; '#' and ';' start a comment (Darknet only knows whole-line comments,
# we also accept trailing ones).
_comment = pp.Regex(r"[#;].*")
_name = pp.Regex(r"[A-Za-z_][A-Za-z0-9_]*")
_header = pp.Suppress("[") + _name("section") + pp.Suppress("]")
_key = pp.Regex(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_value = pp.Regex(r"[^#;\r\n]*")
_option = _key("key") + pp.Suppress("=") + _value("value")
LINE = (pp.Optional(_header | _option) + pp.Optional(pp.Suppress(_comment)) + pp.StringEnd())
_ws = " \t\r\n\f\v\ufeff"


@dataclass
class Option:
    value: str
    line: int


@dataclass
class Section:
    """One ``[name]`` block: its canonical kind, where it starts, and its options."""
    kind: str
    header: str
    line: int
    path: str = "<string>"
    options: dict[str, Option] = field(default_factory=dict)
    used: set = field(default_factory=set)

    # --- error helpers -----------------------------------------------------
    def where(self, key: str | None = None) -> str:
        line = self.options[key].line if key in self.options else self.line
        return f"{self.path}:{line}"

    def error(self, message: str, key: str | None = None) -> CfgError:
        return CfgError(f"{self.where(key)}: [{self.header}] {message}")

    # --- typed getters (each marks the key as used) ------------------------
    def has(self, key: str) -> bool:
        return key in self.options

    def get_str(self, key: str, default=None, *, required: bool = False):
        self.used.add(key)
        if key not in self.options:
            if required:
                raise self.error(f"needs '{key}='")
            return default
        return self.options[key].value

    def _convert(self, key: str, text: str, kind: type):
        try:
            if kind is int:
                if not re.fullmatch(r"[+-]?\d+", text):
                    raise ValueError
                return int(text)
            return float(text)
        except ValueError:
            raise self.error(f"{key}={text}: expected {'an integer' if kind is int else 'a number'}",
                             key) from None

    def get_int(self, key: str, default=None, *, required: bool = False):
        text = self.get_str(key, None, required=required)
        return default if text is None else self._convert(key, text, int)

    def get_float(self, key: str, default=None, *, required: bool = False):
        text = self.get_str(key, None, required=required)
        return default if text is None else self._convert(key, text, float)

    def get_bool(self, key: str, default: bool = False) -> bool:
        return bool(self.get_int(key, int(default)))

    def get_list(self, key: str, kind: type = float, default=None, *, required: bool = False):
        text = self.get_str(key, None, required=required)
        if text is None:
            return default
        items = [t for t in text.split(",")]
        if items and items[-1] == "":  # Darknet tolerates a trailing comma
            items.pop()
        if not items or any(t == "" for t in items):
            raise self.error(f"{key}={text}: expected a comma-separated list", key)
        try:
            return [self._convert(key, t, kind) for t in items]
        except CfgError:
            what = "integers" if kind is int else "numbers"
            raise self.error(f"{key}={text}: expected a comma-separated list of {what}", key) from None

    def get_choice(self, key: str, choices, default: str) -> str:
        value = self.get_str(key, default)
        if value not in choices:
            raise self.error(f"{key}={value}: expected one of {', '.join(sorted(choices))}", key)
        return value

    def unused(self) -> list[str]:
        return [k for k in self.options if k not in self.used]

    def warn_unused(self) -> None:
        for key in self.unused():
            warnings.warn(f"{self.where(key)}: unused field '{key}' in [{self.header}] "
                          f"(Darknet prints 'Unused field' and ignores it)", CfgWarning, stacklevel=3)


def parse(text: str, path: str = "<string>") -> list[Section]:
    """Parse cfg text into sections; raises one CfgError listing every bad line."""
    sections: list[Section] = []
    errors: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip(_ws)
        if not stripped:
            continue
        try:
            tokens = LINE.parse_string(stripped, parse_all=True)
        except pp.ParseBaseException:
            errors.append(f"{path}:{lineno}: not a [section] or key=value line: {raw.strip()!r}")
            continue
        if "section" in tokens:
            header = tokens["section"]
            kind = canonical_kind(header)
            if kind is None:
                why = ("is a Darknet section pydarknet does not implement"
                       if header.lower() in DARKNET_ONLY else "is not a Darknet section")
                errors.append(f"{path}:{lineno}: [{header}] {why}")
                kind = "unknown"
            sections.append(Section(kind, header, lineno, path))
        elif "key" in tokens:
            key = tokens["key"]
            # Darknet removes every blank, also inside values ("1, 2" -> "1,2").
            value = re.sub(r"\s+", "", tokens.get("value", ""))
            if not sections:
                errors.append(f"{path}:{lineno}: option '{key}' before any [section]")
                continue
            sec = sections[-1]
            if key in sec.options:
                # Darknet keeps the first occurrence (option_find scans from the front).
                if sec.options[key].value != value:
                    warnings.warn(f"{path}:{lineno}: '{key}' repeated in [{sec.header}] "
                                  f"(first set on line {sec.options[key].line}); Darknet uses the first",
                                  CfgWarning, stacklevel=2)
                continue
            sec.options[key] = Option(value, lineno)
    if not errors and not sections:
        errors.append(f"{path}: no sections")
    if not errors and sections[0].kind != "net":
        errors.append(f"{path}:{sections[0].line}: the first section must be [net] or [network]")
    if errors:
        raise CfgError("\n".join(errors))
    return sections


def read_cfg_text(path) -> str:
    """A cfg file's text; unreadable files are CfgErrors naming the file."""
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8-sig", errors="strict")
    except FileNotFoundError:
        raise CfgError(f"{path}: no such cfg file") from None
    except UnicodeDecodeError as e:
        raise CfgError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise CfgError(f"{path}: cannot read ({e.strerror})") from None


def parse_file(path) -> list[Section]:
    return parse(read_cfg_text(path), str(path))
