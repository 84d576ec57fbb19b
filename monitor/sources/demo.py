"""Built-in deterministic demo scenario: a synthetic, offline China A-share history (2018-2024).

``generate()`` returns every canonical input series of SIGNALS.md as a long frame
``date, series, value, available_at`` so that the whole pipeline (signals, rules, alert lifecycle,
replay, report) can be shown without network access or vendor data.

The model
- Daily log-returns are built from a market factor, a small-cap factor (micro-caps and CSI 1000/2000
  load on it, CSI 300 and Moutai load negatively) and index-specific noise. The micro-cap index
  normally beats the market (drift) and is more volatile (~25% a year against ~18% for all_a).
- Amounts follow a smooth log-AR(1) process around a scripted level path, so the usual 20d/120d
  amount ratio stays close to 1. Index amounts are the whole-market amount times each index's share.
- Yields follow scripted anchor paths plus small AR(1) noise; the AAA MTN curve is the treasury
  curve plus the credit spread.
- On top of that, SCRIPTED EPISODES (listed in ``EPISODES``) switch each condition of SIGNALS.md on
  for a few weeks, with calm stretches of several months in between. The rotations, the 2022
  stress and the 2024 crash come with micro-cap drawdowns of 15-40% that later recover to new
  highs. Inside a scripted move the random noise is demeaned, so every episode happens whatever
  the seed; outside them the noise alone rarely meets a condition.

Units (as everywhere in the project): closes in index points (``theme.600519.close`` in yuan per
share), amounts in yuan per day, yields in percent, ``funds.smallcap_share_mean`` as a fraction
(0.45 = 45%), ``funds.smallcap_value_total`` in yuan, ``funds.smallcap_count`` as a count.

The same seed always gives the identical frame; the scenario is scripted for
``DEMO_START``..``DEMO_END`` and ``start``/``end`` select a window of it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitor.calendar import TradingCalendar

D = dt.date

DEMO_START = D(2018, 1, 2)
DEMO_END = D(2024, 12, 31)
# The yield curves come with eight years of earlier history (1,945 trading days before
# DEMO_START), so that the ten-year credit-spread percentile, which needs 80% of 2,520 trading
# days (2,016), is defined from late April 2018 on: well before the scripted credit episode.
YIELD_HISTORY_START = D(2010, 1, 4)
DEFAULT_SEED = 20231201

TRADING_DAYS_PER_YEAR = 252
FUND_PUBLICATION_LAG_DAYS = 30  # calendar days from quarter end until holdings are published

COLUMNS = ["date", "series", "value", "available_at"]

# ---------------------------------------------------------------------------------------------
# The scripted episodes. ``start``/``end`` bound the scripted move that drives the condition; the
# condition itself becomes true inside (or just after) that window, once the trailing windows of
# the indicator have filled.
# ---------------------------------------------------------------------------------------------
EPISODES: list[dict] = [
    {
        "kind": "hot_theme_rotation",
        "start": D(2020, 12, 21),
        "end": D(2021, 2, 10),
        "description": "'Core assets' rally led by Kweichow Moutai (theme.600519) while trading "
        "money leaves micro-caps; micro-cap drawdown of ~25%, recovered by September 2021.",
    },
    {
        "kind": "volatility_spike",
        "start": D(2021, 1, 25),
        "end": D(2021, 2, 26),
        "description": "Micro-cap volatility jumps as the 'core assets' rotation turns into a "
        "micro-cap sell-off, and stays high through the rebound.",
    },
    {
        "kind": "market_stress",
        "start": D(2022, 3, 1),
        "end": D(2022, 4, 26),
        "description": "War and city lockdowns: all_a falls ~20% while daily amount drains from "
        "~1.05e12 to ~6.5e11 yuan; micro-caps ~30% below their peak, back at a new high by "
        "late June 2022.",
    },
    {
        "kind": "volatility_spike",
        "start": D(2022, 3, 7),
        "end": D(2022, 5, 10),
        "description": "Micro-cap volatility roughly doubles during the 2022 market stress.",
    },
    {
        "kind": "hot_theme_rotation",
        "start": D(2022, 7, 18),
        "end": D(2022, 8, 26),
        "description": "New-energy / photovoltaic peak (theme.931151) draws money out of "
        "micro-caps; micro-cap drawdown of ~18%, recovered by October 2022.",
    },
    {
        "kind": "hot_theme_rotation",
        "start": D(2023, 3, 1),
        "end": D(2023, 4, 14),
        "description": "ChatGPT-driven AI rally (theme.930713, semiconductors along) while "
        "micro-caps lag; micro-cap drawdown of ~15%, recovered by July 2023.",
    },
    {
        "kind": "turnover_crowding",
        "start": D(2023, 4, 17),
        "end": D(2024, 1, 12),
        "description": "Trading migrates down the size ladder: the CSI 2000 share of whole-market "
        "amount climbs from ~11% to ~16% by September and edges higher into January, "
        "overtaking CSI 300.",
    },
    {
        "kind": "credit_widening",
        "start": D(2023, 12, 18),
        "end": D(2024, 1, 19),
        "description": "The AAA MTN 3y spread, at the lowest level of its 2010-2024 history "
        "(~45 bp) after a 2023 slide, widens by ~30 bp within a month.",
    },
    {
        "kind": "allocation_falling",
        "start": D(2020, 12, 31),
        "end": D(2021, 2, 1),
        "description": "2020-Q4 reports (published ~30 days after quarter end): small-cap funds "
        "cut their small-cap share by ~4 points in the 'core assets' year.",
    },
    {
        "kind": "allocation_falling",
        "start": D(2023, 12, 31),
        "end": D(2024, 1, 30),
        "description": "2023-Q4 reports: small-cap share of small-cap funds down ~4.5 points, "
        "holding value down ~15%.",
    },
    {
        "kind": "volatility_spike",
        "start": D(2024, 1, 15),
        "end": D(2024, 2, 29),
        "description": "Micro-cap crash of ~34% from mid-January into early February 2024 (quant "
        "deleveraging; ~38% below the September 2023 peak) with a sharp rebound; micro-cap "
        "volatility nearly triples. New high only in October 2024.",
    },
    {
        "kind": "turnover_exodus",
        "start": D(2024, 1, 15),
        "end": D(2024, 2, 9),
        "description": "During the crash the CSI 2000 share of amount falls from ~16% back to "
        "~11.5%: active money leaves small caps.",
    },
    {
        "kind": "volatility_spike",
        "start": D(2024, 9, 24),
        "end": D(2024, 10, 8),
        "description": "Stimulus rally: all_a +25% in a few sessions, amounts near 2e12 yuan; "
        "micro-caps reach a new high.",
    },
]


# ---------------------------------------------------------------------------------------------
# Index and theme model
# ---------------------------------------------------------------------------------------------
MARKET_VOL = 0.18  # annualised vol of the market factor (= index.all_a)
SMALLCAP_VOL = 0.13  # annualised vol of the small-cap factor


@dataclass(frozen=True)
class _Asset:
    """One price series: loadings on the factors plus its own noise and drift.

    ``start_level`` in points (yuan for a stock), ``idio_vol`` annualised, ``drift`` an annual
    log-return added to the factor returns.
    """

    series: str
    start_level: float
    beta_market: float
    beta_smallcap: float
    idio_vol: float
    drift: float = 0.0


ASSETS: tuple[_Asset, ...] = (
    _Asset("index.all_a", 4900.0, 1.00, 0.00, 0.000),
    _Asset("index.csi300", 4000.0, 0.95, -0.25, 0.040),
    _Asset("index.csi500", 6200.0, 1.05, 0.30, 0.050),
    _Asset("index.csi1000", 6700.0, 1.10, 0.60, 0.050),
    _Asset("index.csi2000", 2200.0, 1.10, 0.90, 0.050, drift=0.03),
    _Asset("index.microcap", 5000.0, 1.00, 1.00, 0.080, drift=0.15),
    _Asset("theme.930713", 3000.0, 1.15, 0.20, 0.110),  # CSI AI theme
    _Asset("theme.H30184", 3700.0, 1.20, 0.20, 0.110),  # CSI All Share semiconductors
    _Asset("theme.931151", 1200.0, 1.10, 0.10, 0.110),  # CSI photovoltaic
    _Asset("theme.600519", 1000.0, 0.80, -0.30, 0.100),  # Kweichow Moutai, yuan per share
)

# Scripted log-return moves: (target, first day, last day, total log move), spread evenly over
# the trading days of the window. Targets are the factors ("market", "smallcap") or one asset.
_Move = tuple[str, D, D, float]
MOVES: tuple[_Move, ...] = (
    # Broad market path (roughly the CSI All Share of 2018-2024).
    ("market", D(2018, 1, 29), D(2018, 12, 28), -0.30),
    ("market", D(2019, 1, 2), D(2019, 4, 19), 0.22),
    ("market", D(2019, 4, 22), D(2019, 6, 6), -0.08),
    ("market", D(2020, 3, 30), D(2021, 2, 10), 0.25),
    ("market", D(2021, 2, 18), D(2021, 3, 10), -0.08),
    ("market", D(2022, 7, 4), D(2022, 10, 31), -0.08),
    ("market", D(2023, 8, 1), D(2023, 12, 29), -0.10),
    ("market", D(2024, 5, 20), D(2024, 9, 13), -0.10),
    ("theme.600519", D(2019, 1, 2), D(2020, 11, 30), 0.45),
    ("theme.H30184", D(2019, 1, 2), D(2021, 12, 31), 0.35),
    ("theme.H30184", D(2022, 1, 4), D(2022, 10, 31), -0.25),
    ("theme.931151", D(2019, 1, 2), D(2022, 6, 30), 0.75),
    ("theme.931151", D(2022, 9, 1), D(2024, 8, 30), -0.80),
    # Hot-theme rotation 1: 'core assets' (Moutai), micro-caps sold, then the reversal.
    ("theme.600519", D(2020, 12, 21), D(2021, 2, 10), 0.35),
    ("index.microcap", D(2021, 1, 11), D(2021, 2, 1), -0.15),
    ("smallcap", D(2021, 1, 11), D(2021, 2, 1), -0.05),
    ("theme.600519", D(2021, 2, 18), D(2021, 3, 10), -0.30),
    ("index.microcap", D(2021, 2, 18), D(2021, 4, 16), 0.16),
    # Market stress with liquidity drain (Mar-Apr 2022), then the May-June rebound.
    ("market", D(2022, 3, 1), D(2022, 3, 15), -0.09),
    ("market", D(2022, 3, 16), D(2022, 4, 1), 0.02),
    ("market", D(2022, 4, 6), D(2022, 4, 26), -0.15),
    ("smallcap", D(2022, 3, 1), D(2022, 4, 26), -0.08),
    ("market", D(2022, 4, 27), D(2022, 6, 30), 0.16),
    ("smallcap", D(2022, 4, 27), D(2022, 6, 30), 0.10),
    # Hot-theme rotation 2: photovoltaic peak (Jul-Aug 2022).
    ("theme.931151", D(2022, 7, 18), D(2022, 8, 19), 0.28),
    ("index.microcap", D(2022, 8, 1), D(2022, 8, 22), -0.12),
    ("smallcap", D(2022, 8, 1), D(2022, 8, 22), -0.04),
    ("index.microcap", D(2022, 8, 29), D(2022, 9, 30), 0.08),
    # Hot-theme rotation 3: AI rally (Mar-Apr 2023).
    ("theme.930713", D(2023, 3, 1), D(2023, 4, 14), 0.32),
    ("theme.H30184", D(2023, 3, 1), D(2023, 4, 14), 0.12),
    ("index.microcap", D(2023, 3, 20), D(2023, 4, 10), -0.13),
    ("smallcap", D(2023, 3, 20), D(2023, 4, 10), -0.04),
    ("theme.930713", D(2023, 4, 17), D(2023, 6, 30), -0.15),
    ("index.microcap", D(2023, 4, 11), D(2023, 5, 31), 0.08),
    # Crowded run-up into January 2024 while the market slides, the micro-cap crash of
    # January-February 2024, and the rebound.
    ("index.microcap", D(2023, 8, 1), D(2024, 1, 12), 0.10),
    ("market", D(2024, 1, 2), D(2024, 2, 5), -0.07),
    ("smallcap", D(2024, 1, 15), D(2024, 2, 7), -0.15),
    ("index.microcap", D(2024, 1, 22), D(2024, 2, 7), -0.18),
    ("market", D(2024, 2, 6), D(2024, 3, 8), 0.08),
    ("smallcap", D(2024, 2, 8), D(2024, 3, 29), 0.10),
    ("index.microcap", D(2024, 2, 8), D(2024, 3, 29), 0.15),
    # Stimulus rally (late September 2024).
    ("market", D(2024, 9, 24), D(2024, 10, 8), 0.25),
    ("smallcap", D(2024, 9, 24), D(2024, 10, 8), 0.05),
    ("index.microcap", D(2024, 9, 24), D(2024, 11, 29), 0.15),
)

# Scripted volatility multipliers: (noise source, first day, last day, multiplier). Noise sources
# are the factors ("market", "smallcap") or one asset's own noise.
VOL_REGIMES: tuple[tuple[str, D, D, float], ...] = (
    ("smallcap", D(2021, 1, 25), D(2021, 2, 26), 2.2),
    ("index.microcap", D(2021, 1, 25), D(2021, 2, 26), 3.0),
    ("market", D(2022, 3, 7), D(2022, 5, 10), 1.4),
    ("smallcap", D(2022, 3, 7), D(2022, 5, 10), 2.4),
    ("index.microcap", D(2022, 3, 7), D(2022, 5, 10), 2.0),
    ("smallcap", D(2024, 1, 22), D(2024, 2, 29), 3.0),
    ("index.microcap", D(2024, 1, 22), D(2024, 2, 29), 3.0),
)

# ---------------------------------------------------------------------------------------------
# Amounts (yuan per day)
# ---------------------------------------------------------------------------------------------
_Anchors = Sequence[tuple[D, float]]

# Whole-market (CSI All Share) daily amount level, yuan.
ALL_A_AMOUNT: _Anchors = (
    (D(2018, 1, 2), 8.0e11),
    (D(2018, 12, 28), 6.5e11),
    (D(2019, 4, 19), 8.5e11),
    (D(2020, 7, 15), 1.10e12),
    (D(2020, 12, 31), 1.0e12),
    (D(2021, 9, 15), 1.20e12),
    (D(2022, 2, 25), 1.05e12),
    (D(2022, 3, 10), 1.0e12),
    (D(2022, 4, 8), 6.5e11),
    (D(2022, 5, 10), 6.5e11),
    (D(2022, 7, 15), 1.0e12),
    (D(2023, 6, 30), 9.5e11),
    (D(2024, 1, 2), 8.5e11),
    (D(2024, 2, 8), 7.5e11),
    (D(2024, 3, 15), 9.0e11),
    (D(2024, 9, 20), 8.0e11),
    (D(2024, 10, 8), 2.0e12),
    (D(2024, 11, 15), 1.5e12),
    (D(2024, 12, 31), 1.3e12),
)

# Each index's amount as a fraction of the whole-market amount.
AMOUNT_SHARES: dict[str, _Anchors] = {
    "index.csi300": (
        (D(2018, 1, 2), 0.27),
        (D(2021, 2, 10), 0.33),
        (D(2022, 6, 30), 0.26),
        (D(2023, 12, 29), 0.15),
        (D(2024, 2, 9), 0.21),
        (D(2024, 10, 8), 0.25),
    ),
    "index.csi500": ((D(2018, 1, 2), 0.15), (D(2024, 12, 31), 0.15)),
    "index.csi1000": ((D(2018, 1, 2), 0.14), (D(2023, 12, 29), 0.16), (D(2024, 12, 31), 0.15)),
    # The CSI 2000 share drifts down until spring 2023, crowds in, then leaves in the crash.
    "index.csi2000": (
        (D(2018, 1, 2), 0.130),
        (D(2023, 3, 31), 0.110),
        (D(2023, 4, 17), 0.110),
        (D(2023, 9, 15), 0.160),
        (D(2024, 1, 12), 0.165),
        (D(2024, 2, 9), 0.115),
        (D(2024, 12, 31), 0.110),
    ),
}

# Theme amounts, yuan per day (Moutai: the stock's own turnover).
THEME_AMOUNTS: dict[str, _Anchors] = {
    "theme.930713": (
        (D(2018, 1, 2), 3.0e10),
        (D(2023, 2, 28), 3.5e10),
        (D(2023, 4, 14), 9.0e10),
        (D(2023, 6, 30), 4.0e10),
    ),
    "theme.H30184": ((D(2018, 1, 2), 1.0e10), (D(2021, 12, 31), 4.0e10), (D(2024, 12, 31), 4.5e10)),
    "theme.931151": (
        (D(2018, 1, 2), 1.0e10),
        (D(2022, 7, 15), 3.5e10),
        (D(2022, 8, 19), 7.0e10),
        (D(2022, 10, 31), 3.5e10),
        (D(2024, 12, 31), 2.0e10),
    ),
    "theme.600519": (
        (D(2018, 1, 2), 4.0e9),
        (D(2020, 12, 18), 5.5e9),
        (D(2021, 2, 10), 1.4e10),
        (D(2021, 4, 30), 6.0e9),
        (D(2024, 12, 31), 5.0e9),
    ),
}

AMOUNT_AR_PHI = 0.95  # persistence of the log-amount deviation from its level path
AMOUNT_AR_SD = 0.012  # daily innovation of that deviation (log)
AMOUNT_DAILY_SD = 0.04  # day-to-day iid wiggle of log amounts
SHARE_AR_PHI = 0.95
SHARE_AR_SD = 0.003
SHARE_DAILY_SD = 0.025

# ---------------------------------------------------------------------------------------------
# Yields (percent) and the credit spread (bp)
# ---------------------------------------------------------------------------------------------
GOV_3Y: _Anchors = (
    (D(2010, 1, 4), 2.60),
    (D(2011, 8, 31), 3.70),
    (D(2012, 6, 29), 2.80),
    (D(2013, 11, 29), 4.40),
    (D(2015, 6, 30), 3.00),
    (D(2016, 8, 31), 2.50),
    (D(2018, 1, 2), 3.70),
    (D(2018, 12, 28), 3.00),
    (D(2019, 12, 31), 2.85),
    (D(2020, 4, 30), 1.90),
    (D(2020, 11, 30), 3.05),
    (D(2021, 12, 31), 2.50),
    (D(2022, 12, 30), 2.45),
    (D(2023, 12, 29), 2.30),
    (D(2024, 12, 31), 1.45),
)
GOV_1Y_BELOW_3Y = 0.28  # percent
GOV_5Y_ABOVE_3Y = 0.22  # percent

# AAA MTN 3y minus treasury 3y, bp: mid range for years, a slide to the lowest level of the whole
# history in late 2023, then the widening of Dec 2023 - Jan 2024.
CREDIT_SPREAD_3Y: _Anchors = (
    # Pre-history (2010-2017): wide in the 2011 and 2013-14 scares, compressed in 2016, so that
    # the ten-year window of every demo day holds a long stretch below the early-2018 level
    # (otherwise 2018 itself would look like a low base) but nothing below the late-2023 floor.
    (D(2010, 1, 4), 95.0),
    (D(2011, 9, 30), 150.0),
    (D(2012, 12, 31), 110.0),
    (D(2014, 3, 31), 160.0),
    (D(2015, 6, 30), 100.0),
    (D(2015, 12, 31), 72.0),
    (D(2016, 4, 29), 62.0),
    (D(2016, 10, 31), 58.0),
    (D(2017, 3, 31), 64.0),
    (D(2017, 9, 29), 82.0),
    (D(2018, 1, 2), 66.0),
    (D(2018, 4, 30), 74.0),
    (D(2018, 10, 31), 118.0),
    (D(2019, 6, 28), 100.0),
    (D(2020, 5, 29), 86.0),
    (D(2020, 11, 30), 102.0),
    (D(2021, 9, 30), 92.0),
    (D(2022, 6, 30), 88.0),
    (D(2022, 12, 30), 96.0),
    (D(2023, 7, 31), 88.0),
    (D(2023, 11, 30), 45.0),
    (D(2023, 12, 15), 44.0),
    (D(2024, 1, 19), 74.0),
    (D(2024, 3, 29), 78.0),
    (D(2024, 12, 31), 76.0),
)
CREDIT_1Y_VS_3Y_BP = -8.0
CREDIT_5Y_VS_3Y_BP = 12.0
YIELD_AR_PHI = 0.97
YIELD_AR_SD = 0.012  # percent per day
SPREAD_AR_PHI = 0.90
SPREAD_AR_SD = 1.2  # bp per day

# ---------------------------------------------------------------------------------------------
# Quarterly fund allocation (see SIGNALS.md section 6)
# ---------------------------------------------------------------------------------------------
FUND_START_SHARE = 0.42  # mean small-cap share (fraction) of small-cap funds, 2018-Q1
FUND_START_VALUE = 1.2e11  # yuan, 2018-Q1
FUND_START_COUNT = 260
# Scripted quarter-on-quarter changes: quarter end -> (share change in fraction points, value
# change as a fraction, count change).
FUND_SHOCKS: dict[D, tuple[float, float, float]] = {
    D(2020, 12, 31): (-0.040, -0.06, -25.0),
    D(2023, 12, 31): (-0.045, -0.15, -25.0),
}


# ---------------------------------------------------------------------------------------------
# Public entry point
# ---------------------------------------------------------------------------------------------
def generate(seed: int = DEFAULT_SEED, start: D = DEMO_START, end: D = DEMO_END) -> pd.DataFrame:
    """Return the demo scenario as a long frame ``date, series, value, available_at``.

    One row per series per XSHG trading day in [start, end] (``available_at`` = ``date``; the
    yield curves also over YIELD_HISTORY_START..DEMO_START when ``start`` is DEMO_START), and for
    the quarterly ``funds.*`` series one row per quarter, dated by the quarter's last trading day
    and available on the first trading day on or after quarter end + 30 calendar days. Sorted by
    (series, date). Values in canonical units (see the module docstring). The scenario is always
    simulated over DEMO_START..DEMO_END, so a window equals the same rows of the full frame.
    """
    if not DEMO_START <= start <= end <= DEMO_END:
        raise ValueError(
            f"demo scenario covers {DEMO_START}..{DEMO_END}; got start={start}, end={end}"
        )
    calendar = TradingCalendar()
    days = calendar.days(DEMO_START, DEMO_END)
    index = pd.DatetimeIndex(pd.to_datetime(days))
    rng = np.random.default_rng(seed)

    daily: dict[str, np.ndarray] = {}
    daily.update(_closes(index, rng))
    daily.update(_amounts(index, rng))
    funds = _fund_allocation(calendar, rng)
    # The yields draw last: how long their history is changes no other series' noise.
    yield_days = calendar.days(YIELD_HISTORY_START, DEMO_END)
    yields = _yields(pd.DatetimeIndex(pd.to_datetime(yield_days)), rng)

    dates = np.array(days, dtype=object)
    frames = [
        pd.DataFrame({"date": dates, "series": name, "value": values, "available_at": dates})
        for name, values in daily.items()
    ]
    ydates = np.array(yield_days, dtype=object)
    frames += [
        pd.DataFrame({"date": ydates, "series": name, "value": values, "available_at": ydates})
        for name, values in yields.items()
    ]
    frames.append(funds)
    frame = pd.concat(frames, ignore_index=True)
    first = YIELD_HISTORY_START if start == DEMO_START else start
    is_yield = frame["series"].str.startswith("yield.")
    frame = frame[(frame["date"] >= start) | (is_yield & (frame["date"] >= first))]
    frame = frame[frame["date"] <= end]
    frame = frame.sort_values(["series", "date"], kind="stable").reset_index(drop=True)
    frame["value"] = frame["value"].astype("float64")
    return frame[COLUMNS]


# ---------------------------------------------------------------------------------------------
# Building blocks. ``index`` is the DatetimeIndex of the scenario's trading days.
# ---------------------------------------------------------------------------------------------
def _positions(index: pd.DatetimeIndex, first: D, last: D) -> slice:
    """Return the slice of ``index`` that lies in [first, last]."""
    lo = index.searchsorted(pd.Timestamp(first), side="left")
    hi = index.searchsorted(pd.Timestamp(last), side="right")
    return slice(int(lo), int(hi))


def _anchor_path(index: pd.DatetimeIndex, anchors: _Anchors, log: bool = False) -> np.ndarray:
    """Interpolate ``anchors`` (date, value) linearly over trading-day positions; flat outside.

    With ``log=True`` the interpolation is geometric (linear in log value).
    """
    x = index.searchsorted(pd.to_datetime([d for d, _ in anchors])).astype(float)
    y = np.array([v for _, v in anchors], dtype=float)
    grid = np.arange(len(index), dtype=float)
    if log:
        return np.exp(np.interp(grid, x, np.log(y)))
    return np.interp(grid, x, y)


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Return a zero-mean AR(1) path of length ``n`` started from its stationary distribution."""
    shocks = rng.normal(0.0, sd, n)
    out = np.empty(n)
    out[0] = shocks[0] / np.sqrt(1.0 - phi * phi)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + shocks[i]
    return out


def _vol_multiplier(index: pd.DatetimeIndex, source: str) -> np.ndarray:
    """Return the daily volatility multiplier of one noise source (1 outside scripted regimes)."""
    mult = np.ones(len(index))
    for name, first, last, factor in VOL_REGIMES:
        if name == source:
            mult[_positions(index, first, last)] *= factor
    return mult


def _scripted_moves(index: pd.DatetimeIndex, target: str) -> np.ndarray:
    """Return the daily log-returns of ``target``'s scripted moves (0 outside them)."""
    out = np.zeros(len(index))
    for name, first, last, total in MOVES:
        if name == target:
            window = _positions(index, first, last)
            n = window.stop - window.start
            out[window] += total / n
    return out


def _noise(
    rng: np.random.Generator, index: pd.DatetimeIndex, source: str, annual_vol: float
) -> np.ndarray:
    """Return daily Gaussian log-return noise of ``annual_vol`` scaled by the scripted regimes.

    Inside every scripted move of ``source`` the noise is demeaned (a Brownian bridge): it still
    wiggles day to day but adds nothing over the window, so the scripted total is exact and the
    episodes do not depend on the luck of the seed.
    """
    daily_sd = annual_vol / np.sqrt(TRADING_DAYS_PER_YEAR)
    noise = rng.normal(0.0, daily_sd, len(index)) * _vol_multiplier(index, source)
    for name, first, last, _ in MOVES:
        if name == source:
            window = _positions(index, first, last)
            noise[window] -= noise[window].mean()
    return noise


def _closes(index: pd.DatetimeIndex, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Return ``<asset>.close`` for every asset (points; yuan per share for a stock)."""
    market = _noise(rng, index, "market", MARKET_VOL) + _scripted_moves(index, "market")
    smallcap = _noise(rng, index, "smallcap", SMALLCAP_VOL) + _scripted_moves(index, "smallcap")
    closes: dict[str, np.ndarray] = {}
    for asset in ASSETS:
        returns = (
            asset.beta_market * market
            + asset.beta_smallcap * smallcap
            + _noise(rng, index, asset.series, asset.idio_vol)
            + _scripted_moves(index, asset.series)
            + asset.drift / TRADING_DAYS_PER_YEAR
        )
        returns[0] = 0.0
        closes[f"{asset.series}.close"] = np.round(
            asset.start_level * np.exp(np.cumsum(returns)), 2
        )
    return closes


def _log_amount_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return a smooth log-AR(1) deviation plus a small day-to-day wiggle (log units)."""
    return _ar1(rng, n, AMOUNT_AR_PHI, AMOUNT_AR_SD) + rng.normal(0.0, AMOUNT_DAILY_SD, n)


def _amounts(index: pd.DatetimeIndex, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Return ``<index>.amount`` and ``<theme>.amount``, in yuan per day."""
    n = len(index)
    all_a = _anchor_path(index, ALL_A_AMOUNT, log=True) * np.exp(_log_amount_noise(rng, n))
    amounts = {"index.all_a.amount": all_a}
    for name, anchors in AMOUNT_SHARES.items():
        share_noise = _ar1(rng, n, SHARE_AR_PHI, SHARE_AR_SD) + rng.normal(0.0, SHARE_DAILY_SD, n)
        amounts[f"{name}.amount"] = all_a * _anchor_path(index, anchors) * np.exp(share_noise)
    for theme, anchors in THEME_AMOUNTS.items():
        noise = _log_amount_noise(rng, n)
        amounts[f"{theme}.amount"] = _anchor_path(index, anchors, log=True) * np.exp(noise)
    return {key: np.round(values, 0) for key, values in amounts.items()}


def _yields(index: pd.DatetimeIndex, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Return treasury and AAA MTN yields for 1y/3y/5y, in percent (4 decimals, as ChinaBond)."""
    n = len(index)
    gov3 = _anchor_path(index, GOV_3Y) + _ar1(rng, n, YIELD_AR_PHI, YIELD_AR_SD)
    gov1 = gov3 - GOV_1Y_BELOW_3Y + _ar1(rng, n, YIELD_AR_PHI, YIELD_AR_SD / 2)
    gov5 = gov3 + GOV_5Y_ABOVE_3Y + _ar1(rng, n, YIELD_AR_PHI, YIELD_AR_SD / 2)
    spread3_bp = _anchor_path(index, CREDIT_SPREAD_3Y) + _ar1(rng, n, SPREAD_AR_PHI, SPREAD_AR_SD)
    spread1_bp = spread3_bp + CREDIT_1Y_VS_3Y_BP + _ar1(rng, n, SPREAD_AR_PHI, SPREAD_AR_SD / 2)
    spread5_bp = spread3_bp + CREDIT_5Y_VS_3Y_BP + _ar1(rng, n, SPREAD_AR_PHI, SPREAD_AR_SD / 2)
    yields = {
        "yield.gov.1y": gov1,
        "yield.gov.3y": gov3,
        "yield.gov.5y": gov5,
        "yield.credit.1y": gov1 + spread1_bp / 100.0,
        "yield.credit.3y": gov3 + spread3_bp / 100.0,
        "yield.credit.5y": gov5 + spread5_bp / 100.0,
    }
    return {name: np.round(values, 4) for name, values in yields.items()}


def _quarter_ends(first: D, last: D) -> list[D]:
    """Return the calendar quarter-end dates in [first, last]."""
    return [ts.date() for ts in pd.date_range(first, last, freq="QE")]


def _fund_allocation(calendar: TradingCalendar, rng: np.random.Generator) -> pd.DataFrame:
    """Return the quarterly ``funds.*`` rows (long format) with their publication lag.

    ``date`` = last trading day of the quarter; ``available_at`` = first trading day on or after
    quarter end + ``FUND_PUBLICATION_LAG_DAYS`` calendar days. Normal quarters drift up gently
    (the share never falls by 3 points, the value never by 10%); ``FUND_SHOCKS`` script the falls.
    """
    share, value, count = FUND_START_SHARE, FUND_START_VALUE, float(FUND_START_COUNT)
    rows = []
    for i, quarter_end in enumerate(_quarter_ends(DEMO_START, DEMO_END)):
        # Draw every quarter, shocked or not, so that a shock does not shift later quarters' noise.
        share_step = float(np.clip(rng.normal(0.004, 0.006), -0.012, 0.016))
        value_step = float(np.clip(rng.normal(0.035, 0.04), -0.05, 0.12))
        count_step = float(rng.integers(-6, 16))
        if i > 0:
            share_step, value_step, count_step = FUND_SHOCKS.get(
                quarter_end, (share_step, value_step, count_step)
            )
            share += share_step
            value *= 1.0 + value_step
            count = max(1.0, count + count_step)
        report_day = calendar.last_on_or_before(quarter_end)
        published = quarter_end + dt.timedelta(days=FUND_PUBLICATION_LAG_DAYS)
        available = calendar.days(published, published + dt.timedelta(days=31))[0]
        rows += [
            (report_day, "funds.smallcap_count", count, available),
            (report_day, "funds.smallcap_share_mean", round(share, 4), available),
            (report_day, "funds.smallcap_value_total", round(value, 0), available),
        ]
    return pd.DataFrame(rows, columns=COLUMNS)
