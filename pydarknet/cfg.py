"""Darknet ``.cfg`` text -> a list of :class:`Section` objects.

A pyparsing grammar reads one line at a time, so that every bad line is reported
with its number and the rest of the file is still checked.  Values are kept as
text; layers ask for them with the typed getters (``get_int``, ``get_float``,
``get_list`` ...), which turn a wrong type into a :class:`CfgError` naming file
and line, and remember which keys were used so that the unused ones can be
reported as Darknet does ("Unused field").
"""
from __future__ import annotations

import functools
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pyparsing as pp

__all__ = ["CfgError", "CfgWarning", "Option", "Section", "parse", "parse_file", "read_cfg_text",
           "SECTION_ALIASES", "canonical_kind", "clip", "max_cfg_bytes", "MAX_LAYERS"]

#: Largest cfg file read (Darknet's own cfgs are under 64 KB); env PYDARKNET_MAX_CFG_BYTES overrides.
MAX_CFG_BYTES = 1 << 20
#: More sections than this is not a network anyone wrote by hand (Darknet's largest: ~160).
MAX_LAYERS = 10_000
#: Errors listed in one CfgError before "... and N more".
MAX_LISTED_ERRORS = 20
_INT32 = (-2**31, 2**31 - 1)
# What Darknet's atoi (integers) and atof (numbers) read in full, ASCII only; the values of
# these texts are exactly Python's int()/float() of them.  Anything else is an error (see _convert).
_INT_RE = re.compile(r"[+-]?[0-9]+")
_FLOAT_RE = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_ATOI_PREFIX = re.compile(r"[ \t\n\v\f\r]*[+-]?[0-9]*")
_ATOF_PREFIX = re.compile(r"[ \t\n\v\f\r]*(" + _FLOAT_RE.pattern + r"|[+-]?(inf(inity)?|nan))", re.I)


def clip(text, limit: int = 60) -> str:
    """``text`` for an error message: at most ``limit`` characters (a 1 MB value stays out of it)."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def max_cfg_bytes() -> int:
    try:
        return int(os.environ.get("PYDARKNET_MAX_CFG_BYTES", MAX_CFG_BYTES))
    except ValueError:
        return MAX_CFG_BYTES


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
    "rnn": "rnn", "gru": "gru", "lstm": "lstm", "crnn": "crnn",
    # AlexeyAB-only sections (their presence makes a cfg AlexeyAB-flavoured)
    "gaussian_yolo": "gaussian_yolo", "sam": "sam", "scale_channels": "scale_channels",
    "reorg3d": "reorg3d", "local_avgpool": "local_avgpool", "local_avg": "local_avgpool",
    "contrastive": "contrastive", "conv_lstm": "conv_lstm",
    "empty": "empty", "silence": "empty",
}
# Section kinds that only AlexeyAB's Darknet reads.
ALEXEYAB_SECTIONS = {"gaussian_yolo", "sam", "scale_channels", "reorg3d", "local_avgpool", "contrastive",
                     "empty", "conv_lstm"}
# Sections the reference Darknet knows but pydarknet does not build.
DARKNET_ONLY = {"iseg", "deconv", "deconvolutional", "activation", "logistic", "l2norm",
                "lrn", "normalization", "history", "implicit"}


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
        return CfgError(f"{self.where(key)}: [{clip(self.header)}] {message}")

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
        """The number Darknet's ``atoi``/``atof`` reads from ``text``, or a CfgError.

        Only plain ASCII numbers are accepted (``3``, ``-2``, ``.5``, ``1e-3``): for them
        Python's value is Darknet's.  Texts Darknet would read differently from what they
        seem to say (``3x`` -> 3, fullwidth ``３`` -> 0, an empty value -> 0, an integer
        beyond 32 bits, ``nan``/``inf``, hex floats) are errors naming what Darknet reads."""
        if kind is int:
            if _INT_RE.fullmatch(text):
                value = int(text) if len(text) < 20 else None   # (int() of 1 MB of digits is slow)
                if value is not None and _INT32[0] <= value <= _INT32[1]:
                    return value
                raise self.error(f"{key}={clip(text)}: integer out of the 32-bit range Darknet reads", key)
            darknet = _ATOI_PREFIX.match(text).group().strip()[:20]
            read = int(darknet) if darknet.lstrip("+-") else 0
            raise self.error(f"{key}={clip(text)}: expected an integer (Darknet's atoi would read {read})", key)
        if _FLOAT_RE.fullmatch(text):
            value = float(text) if len(text) < 400 else math.inf
            if math.isfinite(value):
                return value
            raise self.error(f"{key}={clip(text)}: number out of range", key)
        m = _ATOF_PREFIX.match(text[:400])
        read = float(m.group(1)) if m else 0.0
        why = "not a finite number" if m and m.end() == len(text) else "expected a number"
        raise self.error(f"{key}={clip(text)}: {why} (Darknet's atof would read {read:g})", key)

    def _check_range(self, key: str, value, low, high, what: str = ""):
        if (low is not None and value < low) or (high is not None and value > high):
            if high is None:
                rule = f"must be at least {low}"
            elif low is None:
                rule = f"must be at most {high}"
            else:
                rule = f"must lie in {low}..{high}"
            raise self.error(f"{key}={clip(self.options[key].value)}: {what}{rule}", key)
        return value

    def get_int(self, key: str, default=None, *, required: bool = False, min=None, max=None):
        """An integer option (Darknet's ``option_find_int``); ``min``/``max`` bound a given value."""
        text = self.get_str(key, None, required=required)
        if text is None:
            return default
        return self._check_range(key, self._convert(key, text, int), min, max)

    def get_float(self, key: str, default=None, *, required: bool = False, min=None, max=None):
        """A finite number (Darknet's ``option_find_float``); ``min``/``max`` bound a given value."""
        text = self.get_str(key, None, required=required)
        if text is None:
            return default
        return self._check_range(key, self._convert(key, text, float), min, max)

    def get_bool(self, key: str, default: bool = False) -> bool:
        return bool(self.get_int(key, int(default)))

    def get_list(self, key: str, kind: type = float, default=None, *, required: bool = False,
                 min=None, max=None):
        """A comma-separated list (Darknet reads each item with atoi/atof); ``default`` may be a
        callable, called only when the key is absent (so a huge default is never built first)."""
        text = self.get_str(key, None, required=required)
        if text is None:
            return default() if callable(default) else default
        items = [t for t in text.split(",")]
        if items and items[-1] == "":  # Darknet tolerates a trailing comma
            items.pop()
        if not items or any(t == "" for t in items):
            raise self.error(f"{key}={clip(text)}: expected a comma-separated list", key)
        try:
            values = [self._convert(key, t, kind) for t in items]
        except CfgError:
            what = "integers" if kind is int else "numbers"
            raise self.error(f"{key}={clip(text)}: expected a comma-separated list of {what}", key) from None
        for v in values:
            self._check_range(key, v, min, max, "each value ")
        return values

    def get_choice(self, key: str, choices, default: str) -> str:
        value = self.get_str(key, default)
        if value not in choices:
            raise self.error(f"{key}={clip(value)}: expected one of {', '.join(sorted(choices))}", key)
        return value

    def unused(self) -> list[str]:
        return [k for k in self.options if k not in self.used]

    def warn_unused(self) -> None:
        for key in self.unused():
            warnings.warn(f"{self.where(key)}: unused field '{clip(key)}' in [{clip(self.header)}] "
                          f"(Darknet prints 'Unused field' and ignores it)", CfgWarning, stacklevel=3)


def _parse_line(stripped: str) -> dict | None:
    """One stripped line's tokens (section, or key and value), None if it is neither; short
    lines are cached, since cfgs repeat the same lines many times."""
    return _parse_short_line(stripped) if len(stripped) <= 200 else _parse_any_line(stripped)


def _parse_any_line(stripped: str) -> dict | None:
    try:
        tokens = LINE.parse_string(stripped, parse_all=True)
    except pp.ParseBaseException:
        return None
    return {k: tokens[k] for k in ("section", "key", "value") if k in tokens}


_parse_short_line = functools.lru_cache(maxsize=4096)(_parse_any_line)


def parse(text: str, path: str = "<string>") -> list[Section]:
    """Parse cfg text into sections; raises one CfgError listing every bad line."""
    sections: list[Section] = []
    errors: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip(_ws)
        if not stripped:
            continue
        tokens = _parse_line(stripped)
        if tokens is None:
            errors.append(f"{path}:{lineno}: not a [section] or key=value line: {clip(raw.strip())!r}")
            continue
        if "section" in tokens:
            header = tokens["section"]
            kind = canonical_kind(header)
            if kind is None:
                why = ("is a Darknet section pydarknet does not implement"
                       if header.lower() in DARKNET_ONLY else "is not a Darknet section")
                errors.append(f"{path}:{lineno}: [{clip(header)}] {why}")
                kind = "unknown"
            elif kind == "net" and sections:
                # Darknet reads it as a layer of unknown type ("Type not recognized").
                errors.append(f"{path}:{lineno}: [{header}] a second [net] section (the first is on line "
                              f"{sections[0].line}); only the first section may be [net]")
            sections.append(Section(kind, header, lineno, path))
            if len(sections) > MAX_LAYERS + 1:
                errors.append(f"{path}:{lineno}: more than {MAX_LAYERS} layers")
                break
        elif "key" in tokens:
            key = tokens["key"]
            # Darknet removes every blank, also inside values ("1, 2" -> "1,2").
            value = re.sub(r"\s+", "", tokens.get("value", ""))
            if not sections:
                errors.append(f"{path}:{lineno}: option '{clip(key)}' before any [section]")
                continue
            sec = sections[-1]
            if key in sec.options:
                # Darknet keeps the first occurrence (option_find scans from the front).
                if sec.options[key].value != value:
                    warnings.warn(f"{path}:{lineno}: '{clip(key)}' repeated in [{sec.header}] "
                                  f"(first set on line {sec.options[key].line}); Darknet uses the first",
                                  CfgWarning, stacklevel=2)
                continue
            sec.options[key] = Option(value, lineno)
    if not errors and not sections:
        errors.append(f"{path}: no sections")
    if not errors and sections[0].kind != "net":
        errors.append(f"{path}:{sections[0].line}: the first section must be [net] or [network]")
    if errors:
        more = len(errors) - MAX_LISTED_ERRORS
        raise CfgError("\n".join(errors[:MAX_LISTED_ERRORS] + ([f"... and {more} more errors"] if more > 0 else [])))
    return sections


def _read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file; a FIFO, device, socket or folder is a CfgError,
    found by ``stat`` before opening (and again after opening without blocking, in case it changed)."""
    def check(st):
        if stat.S_ISDIR(st.st_mode):
            raise CfgError(f"{path}: is a directory, not a cfg file")
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode)
                    or stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a file")
            raise CfgError(f"{path}: is {kind}, not a regular cfg file")
        if st.st_size > limit:
            raise CfgError(f"{path}: {st.st_size} bytes is larger than the {limit}-byte limit for a cfg file "
                           f"(set PYDARKNET_MAX_CFG_BYTES to raise it)")
    check(os.stat(path))
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    with os.fdopen(fd, "rb") as f:
        check(os.fstat(fd))
        data = f.read(limit + 1)
    if len(data) > limit:
        raise CfgError(f"{path}: larger than the {limit}-byte limit for a cfg file")
    return data


def read_cfg_text(path) -> str:
    """A cfg file's text; unreadable, special, binary and oversized files are CfgErrors naming the file."""
    path = Path(path)
    try:
        data = _read_regular(path, max_cfg_bytes())
    except FileNotFoundError:
        raise CfgError(f"{path}: no such cfg file") from None
    except OSError as e:
        raise CfgError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8-sig", errors="strict")
    except UnicodeDecodeError as e:
        raise CfgError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None
    if "\0" in text:
        raise CfgError(f"{path}: not a text file (NUL byte at character {text.index(chr(0))})")
    return text


def parse_file(path) -> list[Section]:
    return parse(read_cfg_text(path), str(path))
