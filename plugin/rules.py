"""Merchandiser rule overrides: pin a rewrite, block a rewrite, per query or per pattern.

The file is parsed once (``load_rules``), failing with the file, line and the valid syntax; per
request ``RuleSet.for_query`` returns the pins and blocks that apply. Shared state is read-only.

Syntax (Querqy-like; ``#`` starts a comment; instructions are indented under their input)::

    laptop =>                       # an exact query (case, spacing and Unicode form ignored)
        PIN: notebook               # always add this rewrite at full weight (1.0)
        PIN: notebook computer ^0.4 # ... or at this weight (boost, 0 < w <= 10)
        BLOCK: laptop bag           # never let the model add this rewrite
    /^hp (\\w+)$/ =>                # a Python regex searched in the normalised, lower-cased query
        PIN: hewlett packard \\1    # groups of the input regex can be used in a pin
    * =>                            # every query
        BLOCK: /\\bcheap\\b/        # block model rewrites matching a regex
        BLOCK: *                    # (or every model rewrite)

Pins bypass the model, the guards and the gate: the merchandiser keeps control. Blocks apply to
model rewrites only (a pin is never blocked).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

from qrw.plugin.errors import RuleSyntaxError
from qrw.plugin.prompt import normalize_text

SYNTAX = (
    "a rule is an input line 'QUERY =>', '/REGEX/ =>' or '* =>' followed by indented lines "
    "'PIN: rewrite [^weight]', 'BLOCK: rewrite', 'BLOCK: /regex/' or 'BLOCK: *'"
)
_INPUT = re.compile(r"^(?P<input>\S.*?)\s*=>\s*$")
_INSTRUCTION = re.compile(r"^\s+(?P<verb>[A-Za-z]+)\s*:\s*(?P<arg>.*?)\s*$")
_WEIGHT = re.compile(r"\s+\^(?P<weight>\d+(?:\.\d+)?)$")
_GROUP_REF = re.compile(r"\\(\d+)")


def rule_key(text: str) -> str:
    """The form queries and rewrites are compared in: NFC, single spaces, case-folded."""
    return normalize_text(text).casefold()


@dataclasses.dataclass(frozen=True)
class Pin:
    template: str
    weight: float
    rule: str
    """``file:line`` of the instruction, for the explain log."""


@dataclasses.dataclass(frozen=True)
class Block:
    pattern: str | None
    """Exact rewrite (``rule_key`` form) to block; None with ``regex`` None means every rewrite."""
    regex: re.Pattern | None
    rule: str

    def blocks(self, rewrite: str) -> bool:
        key = rule_key(rewrite)
        if self.regex is not None:
            return self.regex.search(key) is not None
        return self.pattern is None or self.pattern == key


@dataclasses.dataclass(frozen=True)
class Rule:
    exact: str | None
    regex: re.Pattern | None
    pins: tuple[Pin, ...]
    blocks: tuple[Block, ...]
    line: int

    def match(self, key: str) -> re.Match | bool:
        if self.exact is not None:
            return key == self.exact
        if self.regex is not None:
            return self.regex.search(key) or False
        return True


@dataclasses.dataclass(frozen=True)
class Applied:
    """The rules for one query: pinned rewrites (expanded) and blocks."""

    pins: tuple[tuple[str, float, str], ...]
    blocks: tuple[Block, ...]


@dataclasses.dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    source: str = "<none>"

    def __len__(self) -> int:
        return len(self.rules)

    def for_query(self, query: str) -> Applied:
        key = rule_key(query)
        pins: list[tuple[str, float, str]] = []
        blocks: list[Block] = []
        seen: set[str] = set()
        for rule in self.rules:
            found = rule.match(key)
            if not found:
                continue
            for pin in rule.pins:
                text = found.expand(pin.template) if isinstance(found, re.Match) else pin.template
                text = normalize_text(text)
                if text and rule_key(text) not in seen:
                    seen.add(rule_key(text))
                    pins.append((text, pin.weight, pin.rule))
            blocks.extend(rule.blocks)
        return Applied(tuple(pins), tuple(blocks))


def _compile(pattern: str, where: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise RuleSyntaxError(f"{where}: invalid regular expression /{pattern}/: {exc}", hint=SYNTAX) from None


def parse_rules(lines: Iterable[str], source: str = "<rules>") -> RuleSet:
    """Parse rule lines; any problem raises ``RuleSyntaxError`` naming ``source:line``."""
    rules: list[Rule] = []
    current: dict | None = None

    def close() -> None:
        if current is None:
            return
        if not current["pins"] and not current["blocks"]:
            raise RuleSyntaxError(f"{source}:{current['line']}: the rule has no PIN or BLOCK line", hint=SYNTAX)
        rules.append(Rule(current["exact"], current["regex"], tuple(current["pins"]), tuple(current["blocks"]), current["line"]))

    for number, raw in enumerate(lines, start=1):
        where = f"{source}:{number}"
        line = raw.rstrip("\n\r")
        stripped = line.split(" #", 1)[0].rstrip() if not line.lstrip().startswith("#") else ""
        if not stripped.strip():
            continue
        if not stripped[0].isspace():
            match = _INPUT.match(stripped)
            if match is None:
                raise RuleSyntaxError(f"{where}: expected an input line ending in '=>', got {stripped!r}", hint=SYNTAX)
            close()
            text = match["input"]
            exact = regex = None
            if text == "*":
                pass
            elif len(text) >= 2 and text.startswith("/") and text.endswith("/"):
                regex = _compile(text[1:-1], where)
            else:
                exact = rule_key(text)
            current = {"exact": exact, "regex": regex, "pins": [], "blocks": [], "line": number}
            continue
        match = _INSTRUCTION.match(stripped)
        if match is None:
            raise RuleSyntaxError(f"{where}: expected 'PIN: ...' or 'BLOCK: ...', got {stripped.strip()!r}", hint=SYNTAX)
        if current is None:
            raise RuleSyntaxError(f"{where}: instruction before any input line", hint=SYNTAX)
        verb, arg = match["verb"].upper(), match["arg"]
        if not arg:
            raise RuleSyntaxError(f"{where}: {verb} needs an argument", hint=SYNTAX)
        if verb == "PIN":
            weight = 1.0
            found = _WEIGHT.search(arg)
            if found:
                weight = float(found["weight"])
                arg = arg[: found.start()].strip()
            if not 0 < weight <= 10:
                raise RuleSyntaxError(f"{where}: pin weight {weight} must be in (0, 10]", hint=SYNTAX)
            groups = current["regex"].groups if current["regex"] is not None else 0
            for ref in _GROUP_REF.findall(arg):
                if int(ref) > groups:
                    raise RuleSyntaxError(f"{where}: \\{ref} refers to a group the input pattern does not have ({groups})", hint=SYNTAX)
            if not normalize_text(_GROUP_REF.sub("", arg)) and not _GROUP_REF.search(arg):
                raise RuleSyntaxError(f"{where}: empty pin", hint=SYNTAX)
            current["pins"].append(Pin(arg, weight, where))
        elif verb == "BLOCK":
            if arg == "*":
                current["blocks"].append(Block(None, None, where))
            elif len(arg) >= 2 and arg.startswith("/") and arg.endswith("/"):
                current["blocks"].append(Block(None, _compile(arg[1:-1], where), where))
            else:
                current["blocks"].append(Block(rule_key(arg), None, where))
        else:
            raise RuleSyntaxError(f"{where}: unknown instruction {verb!r} (PIN or BLOCK)", hint=SYNTAX)
    close()
    return RuleSet(tuple(rules), source)


def load_rules(path: str | Path | None) -> RuleSet:
    """Parse a rules file once, at start. None gives an empty rule set."""
    if path is None:
        return RuleSet()
    path = Path(path)
    if not path.is_file():
        raise RuleSyntaxError(f"rules file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleSyntaxError(f"cannot read rules file {path}: {exc}") from exc
    return parse_rules(text.splitlines(), str(path))
