"""The README documents every command and every config key (a docs test, as in sqlite-utils)."""

from __future__ import annotations

import argparse

import signals
from monitor import cli
from monitor.config import Config, ContextConfig, RuleConfig
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> list[str]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append(f"{prefix}{name}")
                out += _commands(sub, f"{prefix}{name} ")
    return out


def test_every_command_is_documented():
    for command in _commands(cli.build_parser()):
        assert f"regime-monitor {command}" in README, command


def _keys(model, prefix=""):
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and hasattr(ann, "model_fields"):
            yield from _keys(ann, f"{prefix}{name}.")
        elif name not in ("signals", "rules", "context"):
            yield f"{prefix}{name}"


def test_every_config_key_is_documented():
    for key in _keys(Config):
        assert f"`{key}`" in README, key
    for key in RuleConfig.model_fields:
        assert f"`rules[].{key}`" in README, key
    for key in ContextConfig.model_fields:
        assert f"`context[].{key}`" in README, key
    for family, params in signals.FAMILY_PARAMS.items():
        for param in params:
            assert f"signals.{family}.{param}" in README or (
                f"signals.{family}." in README and f"`{param}`" in README), (family, param)


def test_every_signal_is_documented():
    for name in signals.REGISTRY:
        assert f"`{name}`" in README, name
