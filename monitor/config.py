"""The TOML config, validated with pydantic. Unknown keys are errors that name the key.

Secrets never live here: the Slack token and webhook URL come from the environment only.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

import signals
from monitor.alerting import expr
from signals import exposure as exposure_defaults  # pandas is imported there on first use only
from signals.series import kind_of as series_kind

DEFAULT_CONFIG = Path("config/monitor.toml")
CONFIG_ENV = "REGIME_MONITOR_CONFIG"
COMPOSITE = "composite.conditions_active"
RISK_EXCLUDED_FAMILIES = ("regime", "risk", "funds")
"""Signal families the drawdown-risk model cannot take as features: fitted models (their history is
computed on their own schedule) and quarterly fund data (published with a lag)."""


def one_line(text: str) -> str:
    """Return ``text`` with its line breaks escaped (a key, path or argument may contain one)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(ValueError):
    """A config file is unreadable or invalid; the message is one line naming file and key
    (line breaks in a key or path are escaped)."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(message))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class ScheduleConfig(_Strict):
    cron: str = "0 20 * * mon-fri"
    timezone: str = "Asia/Shanghai"
    misfire_grace_seconds: int = Field(default=6 * 3600, ge=60)
    catch_up_max_days: int = Field(default=60, ge=0)

    @model_validator(mode="after")
    def _check(self) -> ScheduleConfig:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(self.cron, timezone=self.timezone)
        except Exception as exc:  # apscheduler/zoneinfo raise several types
            raise ValueError(f"invalid cron {self.cron!r} or timezone {self.timezone!r}: {exc}") from None
        return self


class CalendarConfig(_Strict):
    extra_closed: list[dt.date] = []


class StorageConfig(_Strict):
    path: str = "var/regime-monitor.db"


_THEME_ID = re.compile(r"^[A-Za-z0-9_]+$")


class AkshareConfig(_Strict):
    """``[source.akshare]``: the live AKShare source (``pip install 'regime-monitor[live]'``)."""

    delay_seconds: float = Field(default=1.0, ge=0, le=60)
    timeout_seconds: float = Field(default=20.0, gt=0, le=600)
    cross_section_timeout_seconds: float = Field(default=300.0, gt=0, le=3600)
    retries: int = Field(default=2, ge=0, le=10)
    backoff_seconds: float = Field(default=2.0, ge=0, le=600)
    max_consecutive_failures: int = Field(default=3, ge=1)
    start_date: dt.date = dt.date(2014, 1, 1)
    themes: dict[str, Literal["index", "stock"]] = {
        "930713": "index", "H30184": "index", "600519": "stock"}
    holdings_job: bool = True
    holdings_cron: str = "30 1 * * *"
    holdings_max_missing_share: float = Field(default=0.01, ge=0, le=1)

    @field_validator("holdings_cron")
    @classmethod
    def _holdings_cron(cls, value: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(value, timezone="Asia/Shanghai")
        except Exception as exc:  # apscheduler raises several types
            raise ValueError(f"invalid cron {value!r}: {exc}") from None
        return value

    @field_validator("themes")
    @classmethod
    def _theme_ids(cls, value: dict[str, str]) -> dict[str, str]:
        for theme, kind in value.items():
            if not _THEME_ID.match(theme):
                raise ValueError(f"{theme!r}: a theme id has only letters, digits and underscores")
            if kind == "stock" and not re.fullmatch(r"\d{6}", theme):
                raise ValueError(f"{theme!r}: a stock theme proxy needs a 6-digit A-share code")
        return value


class SourceConfig(_Strict):
    kind: Literal["demo", "csv", "akshare"] = "demo"
    demo_seed: int = 20231201
    drop_folder: str = ""
    drop_folder_coverage: Literal["top10", "full"] = "top10"
    drop_folder_settle_seconds: float = Field(default=10.0, ge=0, le=3600)
    akshare: AkshareConfig = AkshareConfig()


_TOKEN_LIKE = re.compile(r"xox[a-z]-|hooks\.slack\.com/", re.IGNORECASE)


class SlackConfig(_Strict):
    channel: str | None = None
    api_url: str | None = None
    timeout_seconds: int = Field(default=30, ge=1, le=300)
    chart: bool = True

    @field_validator("channel", "api_url")
    @classmethod
    def _no_secrets(cls, value: str | None, info) -> str | None:
        # The value is never echoed: it may be a secret pasted into the wrong place.
        if value and _TOKEN_LIKE.search(value):
            raise ValueError("looks like a Slack token or webhook URL; secrets belong in "
                             "$SLACK_BOT_TOKEN / $SLACK_WEBHOOK_URL, never in the config file")
        if value and info.field_name == "api_url" and not re.match(r"^https?://", value):
            raise ValueError("must start with http:// or https://")
        return value


class NotifyConfig(_Strict):
    slack: SlackConfig = SlackConfig()
    console: bool = True
    inhibit: bool = True
    weekly_summary: bool = False
    retry_base_seconds: int = Field(default=30, ge=1)
    retry_max_seconds: int = Field(default=3600, ge=1)

    @model_validator(mode="after")
    def _check(self) -> NotifyConfig:
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ValueError("retry_max_seconds: must be at least retry_base_seconds")
        return self


class DataQualityConfig(_Strict):
    stale_after_days: int = Field(default=3, ge=0)
    required: list[str] = []


class EpisodesConfig(_Strict):
    drawdown_min_depth: float = Field(default=0.10, gt=0, lt=1)
    rotation_rule: str = ""


class RuleConfig(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    severity: Literal["info", "warning", "critical"] = "warning"
    when: str
    for_days: int = Field(default=1, ge=1)
    clear_when: str | None = None
    clear_days: int = Field(default=1, ge=1)
    repeat_every_days: int = Field(default=0, ge=0)
    explain: str = Field(min_length=1)

    _when: expr.Expr = PrivateAttr()
    _clear: expr.Expr | None = PrivateAttr(default=None)
    _names: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="after")
    def _parse(self) -> RuleConfig:
        try:
            self._when = expr.parse(self.when)
        except expr.ExprError as exc:
            raise ValueError(f"when: {exc}") from None
        if self.clear_when is not None:
            try:
                self._clear = expr.parse(self.clear_when)
            except expr.ExprError as exc:
                raise ValueError(f"clear_when: {exc}") from None
        self._names = frozenset(self._when.names | (self._clear.names if self._clear else set()))
        return self

    @property
    def when_expr(self) -> expr.Expr:
        return self._when

    @property
    def clear_expr(self) -> expr.Expr | None:
        return self._clear

    @property
    def names(self) -> frozenset[str]:
        """Signal names the rule reads (parsed once: the cycle asks for them many times a day)."""
        return self._names


CONTEXT_KEY = "context"


class ContextConfig(_Strict):
    """``[[context]]``: a market state shown on one line in every digest (not an alert: no
    lifecycle, no events)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    when: str
    label: str = Field(min_length=1, max_length=80)
    label_off: str = Field(default="", max_length=80)

    _when: expr.Expr = PrivateAttr()

    @model_validator(mode="after")
    def _parse(self) -> ContextConfig:
        try:
            self._when = expr.parse(self.when)
        except expr.ExprError as exc:
            raise ValueError(f"{CONTEXT_KEY} ({self.name}).when: {exc}") from None
        return self

    @property
    def when_expr(self) -> expr.Expr:
        return self._when

    @property
    def names(self) -> frozenset[str]:
        """Signal names the entry reads."""
        return frozenset(self._when.names)


NAV_LAG_DAYS = 5
"""XSHG trading days after a NAV's date before it is known (``exposure.nav_lag_days``): the
default of the config and of ``import-csv`` when given no config."""
MIN_WINDOW_WEEKS, MAX_WINDOW_WEEKS = exposure_defaults.MIN_INTERVALS, 520
"""An exposure window holds at least the NAV intervals a correlation needs
(``signals.exposure.MIN_INTERVALS``) and at most ten years of weekly NAVs."""
PRODUCTS_KEY = "products"


class ExposureConfig(_Strict):
    """``[exposure]``: how the products' micro-cap exposure is measured (``regime-monitor
    exposure``) and shown in the digest. Threshold defaults live in ``signals.exposure``."""

    nav_lag_days: int = Field(default=NAV_LAG_DAYS, ge=0, le=60)
    windows_weeks: list[int] = list(exposure_defaults.DEFAULT_WINDOWS)
    rank_window_weeks: int = exposure_defaults.DEFAULT_RANK_WINDOW
    large_microcap_corr: float = exposure_defaults.LARGE_MICROCAP_CORR
    loose_tracking_corr: float = exposure_defaults.LOOSE_TRACKING_CORR
    digest_top: int = Field(default=3, ge=0, le=50)

    @field_validator("windows_weeks")
    @classmethod
    def _windows(cls, value: list[int]) -> list[int]:
        if not value:
            raise ValueError("give at least one window (in NAV intervals), e.g. [26, 52]")
        for w in value:
            if not MIN_WINDOW_WEEKS <= w <= MAX_WINDOW_WEEKS:
                raise ValueError(f"a window is {MIN_WINDOW_WEEKS} to {MAX_WINDOW_WEEKS} NAV "
                                 f"intervals, got {w}")
        if len(set(value)) != len(value):
            raise ValueError(f"a window is given twice in {value}")
        return value

    @field_validator("large_microcap_corr", "loose_tracking_corr")
    @classmethod
    def _correlation(cls, value: float) -> float:
        if not 0 <= value <= 1:
            raise ValueError(f"must be a correlation between 0 and 1, got {value!r}")
        return value



class ProductConfig(_Strict):
    """``[[products]]``: one product of the PM's book whose NAVs are imported with
    ``import-csv`` (``date,product,nav``)."""

    name: str = Field(min_length=1, max_length=200)
    benchmark: str
    strategy: str = Field(default="", max_length=80)
    weight: float | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value != value.strip():
            raise ValueError(f"{value!r} has spaces around it (the NAV file's product column is "
                             "read without them)")
        if not value.isprintable():
            raise ValueError("must not contain control characters")
        return value

    @field_validator("benchmark")
    @classmethod
    def _benchmark(cls, value: str) -> str:
        if value not in exposure_defaults.BENCHMARKS:
            raise ValueError(f"unknown benchmark {value!r} (known: "
                             f"{', '.join(exposure_defaults.BENCHMARKS)})")
        return value

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: float | None) -> float | None:
        if value is not None and not 0 <= value <= 1:
            raise ValueError(f"must be the product's share of the book, between 0 and 1, got "
                             f"{value!r}")
        return value


MAX_WINDOW_DAYS = 10_000
"""The longest window a signal parameter may give, in trading days (about 40 years)."""
FRACTION_PARAMS = {("risk", "drawdown")}
"""Signal parameters that are a fraction strictly between 0 and 1."""
NON_NEGATIVE_PARAMS = {("risk", "l2")}
"""Signal parameters that may be 0 (a finite number >= 0)."""


def _param_problem(family: str, key: str, value: Any) -> str | None:
    """Return why a ``[signals.<family>]`` parameter's value (of the right type) is unusable, or
    None. Every integer parameter is a window or a count of trading days (or periods a year):
    1 .. ``MAX_WINDOW_DAYS``. A float is finite and positive (``FRACTION_PARAMS``: below 1;
    ``NON_NEGATIVE_PARAMS``: 0 allowed). The credit tenor must name a canonical yield series."""
    default = signals.FAMILY_PARAMS[family][key]
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not isinstance(default, float):
        if not 1 <= value <= MAX_WINDOW_DAYS:
            return f"must be a whole number of trading days from 1 to {MAX_WINDOW_DAYS}"
        return None
    if isinstance(value, int | float):
        number = float(value)
        if number != number or number in (float("inf"), float("-inf")):
            return "must be a finite number"
        if (family, key) in FRACTION_PARAMS and not 0 < number < 1:
            return "must be a fraction between 0 and 1 (e.g. 0.10 for 10%)"
        if (family, key) in NON_NEGATIVE_PARAMS:
            return None if number >= 0 else "must be 0 or more"
        return None if number > 0 else "must be positive"
    if family == "credit" and key == "tenor" and series_kind(f"yield.gov.{value}") is None:
        return "must be a tenor with yield series: 1y, 3y, 5y, 7y or 10y"
    return None


class Config(_Strict):
    schedule: ScheduleConfig = ScheduleConfig()
    calendar: CalendarConfig = CalendarConfig()
    storage: StorageConfig = StorageConfig()
    source: SourceConfig = SourceConfig()
    notify: NotifyConfig = NotifyConfig()
    signals: dict[str, dict[str, Any]] = {}
    episodes: EpisodesConfig = EpisodesConfig()
    data_quality: DataQualityConfig = DataQualityConfig()
    rules: list[RuleConfig] = []
    context: list[ContextConfig] = []
    exposure: ExposureConfig = ExposureConfig()
    products: list[ProductConfig] = []

    @model_validator(mode="after")
    def _check(self) -> Config:
        for fam, params in self.signals.items():
            if fam not in signals.FAMILY_PARAMS:
                raise ValueError(f"signals.{fam}: unknown signal family (known: "
                                 f"{', '.join(sorted(signals.FAMILY_PARAMS))})")
            defaults = signals.FAMILY_PARAMS[fam]
            for key, value in params.items():
                if key not in defaults:
                    raise ValueError(f"signals.{fam}.{key}: unknown parameter (known: "
                                     f"{', '.join(sorted(defaults)) or 'none'})")
                want = type(defaults[key])
                ok = isinstance(value, want) or (want is float and isinstance(value, int))
                if not ok or (want is int and isinstance(value, bool)):
                    raise ValueError(f"signals.{fam}.{key}: expected {want.__name__}, "
                                     f"got {value!r}")
                problem = _param_problem(fam, key, value)
                if problem:
                    raise ValueError(f"signals.{fam}.{key}: {problem}, got {value!r}")
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise ValueError(f"rules[{i}] ({rule.name}).name: duplicate rule name "
                                 f"{rule.name!r}")
            seen.add(rule.name)
            for name in sorted(rule.names):
                if name == COMPOSITE:
                    raise ValueError(f"rules[{i}] ({rule.name}): {COMPOSITE} counts the rules "
                                     "themselves and cannot be used in a rule")
                if name not in signals.REGISTRY:
                    raise ValueError(f"rules[{i}] ({rule.name}): unknown signal {name!r}")
        for i, name in enumerate(self.signal_params()["risk"]["features"]):
            sig = signals.REGISTRY.get(name) if isinstance(name, str) else None
            if sig is None or sig.state is not None or sig.family in RISK_EXCLUDED_FAMILIES:
                raise ValueError(f"signals.risk.features[{i}]: {name!r} is not a daily signal the "
                                 "risk model can read (a registered signal, not regime, risk or funds)")
        if "data_stale" in seen:
            raise ValueError("rules: 'data_stale' is the built-in data-quality alert; choose another name")
        names: set[str] = set()
        for entry in self.context:
            where = f"{CONTEXT_KEY} ({entry.name})"
            if entry.name in names:
                raise ValueError(f"{where}.name: duplicate context name {entry.name!r}")
            names.add(entry.name)
            for name in sorted(entry.names):
                if name == COMPOSITE:
                    raise ValueError(f"{where}.when: {COMPOSITE} counts the rules and cannot be "
                                     "used in a context entry")
                if name not in signals.REGISTRY:
                    raise ValueError(f"{where}.when: unknown signal {name!r}")
        for i, name in enumerate(self.data_quality.required):
            if series_kind(name) is None:
                raise ValueError(f"data_quality.required[{i}]: {name!r} is not a canonical series name")
        if self.episodes.rotation_rule and self.episodes.rotation_rule not in seen:
            raise ValueError(f"episodes.rotation_rule: no rule named {self.episodes.rotation_rule!r}")
        exposure = self.exposure
        if exposure.rank_window_weeks not in exposure.windows_weeks:
            raise ValueError(f"exposure.rank_window_weeks: {exposure.rank_window_weeks} is not one "
                             f"of exposure.windows_weeks {exposure.windows_weeks}")
        declared: set[str] = set()
        for i, product in enumerate(self.products):
            if product.name in declared:
                raise ValueError(f"{PRODUCTS_KEY}[{i}] ({product.name}).name: duplicate product "
                                 f"name {product.name!r}")
            declared.add(product.name)
        book = sum(p.weight or 0.0 for p in self.products)
        if book > 1 + 1e-9:
            raise ValueError(f"{PRODUCTS_KEY}: the weights add up to {book:g}, more than the "
                             "whole book (1)")
        return self

    def signal_params(self) -> dict[str, dict[str, Any]]:
        """Return every family's parameters, defaults overridden by ``[signals.<family>]``."""
        return signals.resolved_params(self.signals)

    def rule(self, name: str) -> RuleConfig:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)


def _loc(loc: tuple[Any, ...], data: Any = None) -> str:
    """Return a key path as written in messages: ``notify.slack.channel``, ``rules[1]``; an entry
    of ``[[rules]]`` is named too when ``data`` (the parsed TOML) gives it a name:
    ``rules[1] (drawdown_risk).for_days``."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            name = node.get("name") if isinstance(node, dict) else None
            if isinstance(name, str) and name and out.startswith(("rules[", f"{PRODUCTS_KEY}[")):
                out += f" ({name})"
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


def _validation_message(exc: ValidationError, data: Any = None) -> str:
    err = exc.errors()[0]
    where = _loc(tuple(p for p in err["loc"] if not str(p).startswith("function-after")), data)
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key"
    msg = err["msg"].removeprefix("Value error, ")
    if msg.startswith(f"{CONTEXT_KEY} ("):  # a context entry names itself: "context (name).when"
        return msg
    field = re.match(r"^(when|clear_when): ", msg)
    if where and field:  # a rule's expression: name the key itself
        where, msg = f"{where}.{field.group(1)}", msg[field.end():]
    return f"{where}: {msg}" if where else msg


def config_path(path: str | Path | None = None) -> Path:
    """Return the config path: explicit, else $REGIME_MONITOR_CONFIG, else config/monitor.toml."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))


def parse_config(text: str, origin: str = "<config>") -> Config:
    """Parse and validate TOML ``text``; raise ConfigError naming ``origin`` and the key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{origin}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not valid TOML: arrays or tables nested too deeply") from None
    if _depth(data) > MAX_DEPTH:
        raise ConfigError(f"{origin}: values nested more than {MAX_DEPTH} levels deep: no "
                          "setting of regime-monitor is nested like that") from None
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{origin}: {_validation_message(exc, data)}") from None


MAX_DEPTH = 8  # the deepest setting is [[rules]] > when, or [signals.<family>] > list: 3 levels


def _depth(value: object, limit: int = MAX_DEPTH + 1) -> int:
    """Return how deeply ``value`` nests tables and arrays (a scalar is 0), counting at most to
    ``limit`` (iterative: no recursion, whatever the input)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            level += 1
            deepest = max(deepest, level)
            if level < limit:
                stack.extend((v, level) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate the config file; raise ConfigError with a one-line reason."""
    p = config_path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}): save the config as UTF-8") from None
    return parse_config(text, str(p))
