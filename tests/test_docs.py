"""The README documents every command, option and config key with its default (a docs test, as in
sqlite-utils), one test per item; the shipped config files show the code's defaults.

The code is the truth: the click commands (``monitor.cli.cli``) and the pydantic models of
``monitor/config.py`` (with ``signals.FAMILY_PARAMS``) are walked, and each item is looked up in
the README's "Command reference" and "Configuration reference" tables:

- a command: a row of the command table whose synopsis starts ``regime-monitor <command>``;
- an argument: its metavar in that synopsis;
- an option: a row ``| `regime-monitor <command>` | `--option ...` | default | meaning |`` of the
  options table; the default cell is ``required``, ``off`` for a flag, the default in backticks
  (the first backticked text), or words when the default is computed at run time;
- a config key: a row ``| `key` | default | meaning |``; the default cell is ``required``,
  ``unset ...`` for None, or the default as a TOML value in backticks (compared as values, so
  ``0.10`` documents 0.1).
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from pydantic_core import PydanticUndefined

import signals
from monitor import cli
from monitor.config import Config, ContextConfig, ProductConfig, RuleConfig
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
PROG = "regime-monitor"


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end > 0 else None]


def _rows(text: str) -> list[list[str]]:
    """The cells of every table row in ``text`` (``\\|`` inside a cell is not a separator)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and not re.fullmatch(r"\|[-|: ]+\|", line):
            cells = re.split(r"(?<!\\)\|", line.strip("|"))
            rows.append([c.strip().replace("\\|", "|") for c in cells])
    return rows


def _first_code(cell: str) -> str | None:
    m = re.search(r"`([^`]*)`", cell)
    return m.group(1) if m else None


COMMAND_ROWS = _rows(_section("Command reference"))
CONFIG_ROWS = _rows(_section("Configuration reference"))


# -- commands and options ----------------------------------------------------------------------

def _commands(group: click.Group = cli.cli, prefix: str = "") -> Iterator[tuple[str, click.Command]]:
    for name, command in group.commands.items():
        yield f"{prefix}{name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{prefix}{name} ")


COMMANDS = dict(_commands())
OPTIONS = [("", p) for p in cli.cli.params] + [
    (path, p) for path, command in COMMANDS.items() for p in command.params]


def _synopses(path: str) -> list[str]:
    """The command-table synopses (first cells) of command ``path``."""
    want = f"`{PROG} {path}"
    return [row[0] for row in COMMAND_ROWS
            if len(row) == 2 and row[0].startswith(want) and row[0][len(want)] in " `"]


@pytest.mark.parametrize("path", list(COMMANDS))
def test_command_is_documented(path):
    assert _synopses(path), f"no row `{PROG} {path} ...` in the README's command table"


def _item(path: str, param: click.Parameter) -> str:
    return f"{PROG} {path} {param.opts[0] if isinstance(param, click.Option) else param.metavar}".replace(
        "  ", " ")


_NO_DEFAULT = (None, getattr(click.core, "UNSET", None))  # click >= 8.3 marks "no default" UNSET


def _default(param: click.Option):
    """The option's default as the user sees it (a library constant's value for --draws), or
    None when it has none (the command computes it at run time, or the option is a list)."""
    default = param.get_default(click.Context(cli.cli), call=True)
    return None if any(default is x for x in _NO_DEFAULT) or default == () else default


@pytest.mark.parametrize("path,param", OPTIONS, ids=[_item(path, p) for path, p in OPTIONS])
def test_option_is_documented_with_its_default(path, param):
    if isinstance(param, click.Argument):  # an argument: its metavar in the synopsis
        synopses = _synopses(path)
        assert any(param.metavar.strip("[]") in s for s in synopses), (param.metavar, synopses)
        return
    command = f"`{PROG} {path}`".replace(" `", "`")
    rows = [row for row in COMMAND_ROWS if len(row) == 4 and row[0] == command
            and all(f"`{opt}" in row[1] for opt in param.opts)]
    assert rows, f"no row | {command} | `{'`, `'.join(param.opts)}` | of the README's options table"
    cell = rows[0][2]
    default = _default(param)
    if param.required:
        assert cell == "required", cell
    elif param.is_flag:
        assert cell == "off", cell
    elif default is not None:
        shown = str(default)
        assert _first_code(cell) == shown, f"{cell!r} does not give the default `{shown}`"
    else:  # computed at run time: said in words
        assert cell, rows[0]


def test_every_documented_option_exists():
    known = {(f"`{PROG} {path}`".replace(" `", "`"), opt) for path, p in OPTIONS
             if isinstance(p, click.Option) for opt in p.opts}
    for row in COMMAND_ROWS:
        if len(row) == 4 and row[0].startswith(f"`{PROG}"):
            for opt in re.findall(r"`(-[-\w]+)", row[1]):
                assert (row[0], opt) in known, row


# -- config keys -------------------------------------------------------------------------------

REQUIRED = object()


def _keys(model=Config, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Every config key of ``model`` as (dotted key, default or REQUIRED)."""
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            yield from _keys(ann, f"{prefix}{name}.")
        elif model is Config and name == "signals":
            for family, params in signals.FAMILY_PARAMS.items():
                for param, default in params.items():
                    yield f"signals.{family}.{param}", default
        elif model is Config and name == "rules":
            yield from _keys(RuleConfig, "rules[].")
        elif model is Config and name == "context":
            yield from _keys(ContextConfig, "context[].")
        elif model is Config and name == "products":
            yield from _keys(ProductConfig, "products[].")
        else:
            default = field.default
            if default is PydanticUndefined:
                default = field.default_factory() if field.default_factory else REQUIRED
            yield f"{prefix}{name}", default


KEYS = list(_keys())


def _toml_value(text: str):
    return tomllib.loads(f"v = {text}")["v"]


@pytest.mark.parametrize("key,default", KEYS, ids=[k for k, _ in KEYS])
def test_config_key_is_documented_with_its_default(key, default):
    rows = [row for row in CONFIG_ROWS if len(row) == 3 and row[0] == f"`{key}`"]
    assert len(rows) == 1, f"{len(rows)} rows | `{key}` | in the README's configuration tables"
    cell = rows[0][1]
    if default is REQUIRED:
        assert cell == "required", cell
    elif default is None:
        assert cell.startswith("unset"), cell
    else:
        code = _first_code(cell)
        assert code is not None, f"{cell!r}: the default in backticks"
        assert _toml_value(code) == default, f"README {code}, code {default!r}"


def test_every_documented_key_exists():
    known = {f"`{k}`" for k, _ in KEYS}
    for row in CONFIG_ROWS:
        if len(row) == 3 and row[0] not in ("key", "`signals.<family>.<param>`"):
            assert row[0] in known, row


def test_every_signal_is_documented():
    for name in signals.REGISTRY:
        assert f"`{name}`" in README, name


# -- the shipped config files show the defaults -----------------------------------------------

SETTINGS = {"episodes.rotation_rule"}  # set on purpose in the shipped files, not defaults
EXAMPLES = {"notify.slack.channel", "notify.slack.api_url"}  # commented examples of an unset key


def _shown(path: Path) -> Iterator[tuple[str, object]]:
    """Every key the file sets, or shows commented out (``# key = value``) under a table header
    (itself possibly commented out), with its value; [[rules]], [[context]] and [[products]]
    tables (commented out or not) left out."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))

    def walk(table: dict, prefix: str) -> Iterator[tuple[str, object]]:
        for k, v in table.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict) and key != "source.akshare.themes":
                yield from walk(v, f"{key}.")
            elif key not in ("rules", "context", "products"):
                yield key, v

    yield from walk(data, "")
    section = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := re.match(r"^#?\s*\[([\w.]+)\]\s*$", line):
            section = m.group(1)
        elif re.match(r"^#?\s*\[\[", line):  # an array of tables, possibly a commented example
            section = None
        elif (m := re.match(r"^#\s*([a-z_]+)\s*=\s*(.*)$", line)) and section:
            text = m.group(2)
            while True:  # strip a trailing comment: the longest prefix that parses
                try:
                    value = _toml_value(text)
                    break
                except tomllib.TOMLDecodeError:
                    if "#" not in text:
                        raise
                    text = text[:text.rindex("#")].rstrip()
            yield f"{section}.{m.group(1)}", value


SHOWN = [(f"{path.name}:{key}", key, value) for path in sorted((ROOT / "config").glob("*.toml"))
         for key, value in _shown(path)]


@pytest.mark.parametrize("item,key,value", SHOWN, ids=[i for i, _, _ in SHOWN])
def test_config_file_shows_the_default(item, key, value):
    defaults = dict(KEYS)
    assert key in defaults, f"{item}: not a config key"
    if key in SETTINGS | EXAMPLES:
        assert value != defaults[key], f"{item}: now the default; remove it from SETTINGS/EXAMPLES"
    else:
        assert value == defaults[key], f"{item} = {value!r}, but the default is {defaults[key]!r}"


def _toml_text(value) -> str:
    return '"' + value + '"' if isinstance(value, str) else str(value).lower() if isinstance(
        value, bool) else str(value)


RULE_KEYS = [(path, key, default) for path in sorted((ROOT / "config").glob("*.toml"))
             for key, default in _keys(RuleConfig)]


@pytest.mark.parametrize("path,key,default", RULE_KEYS,
                         ids=[f"{p.name}:rules[].{k}" for p, k, _ in RULE_KEYS])
def test_config_file_explains_each_rule_key_with_its_default(path, key, default):
    """The "Keys of each [[rules]] table" comment gives each key's default (or says required)."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines()
             if re.match(rf"^#\s+{key}\s+[^=\s]", ln)]  # not a commented `key = value`
    assert len(lines) == 1, (path.name, key, lines)
    if default is REQUIRED:
        assert lines[0].endswith("- required"), lines[0]
    elif default is None:  # clear_when: said in words
        assert "(default: `when` no longer holds)" in lines[0], lines[0]
    else:
        assert f"(default {_toml_text(default)}" in lines[0], lines[0]
