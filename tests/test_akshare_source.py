"""The AKShare source against recorded frames of akshare 1.19.5 (tests/akshare_frames.py), no network."""

from __future__ import annotations

import datetime as dt
import re
import sys
import threading
import time
import tomllib

import numpy as np
import pandas as pd
import pytest
import requests

from monitor.calendar import TradingCalendar
from monitor.config import AkshareConfig, ConfigError, parse_config
from monitor.sources import akshare_source as aks
from monitor.sources import make_source
from monitor.sources.akshare_source import AkshareSource, AkshareUnavailable
from monitor.sources.base import Fetched
from tests import akshare_frames as frames
from tests.conftest import ROOT

SHANGHAI = aks.SHANGHAI
CAL = TradingCalendar()
AS_OF = dt.date(2024, 1, 5)
SINCE = dt.date(2023, 12, 29)  # rows of 2024-01-02 .. 2024-01-05


class FakeAk:
    """AKShare's functions (same names and parameters as 1.19.5) answering with recorded frames."""

    __version__ = aks.AKSHARE_VERSION

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.times: list[float] = []

    def _log(self, name: str, **kwargs) -> None:
        self.calls.append((name, kwargs))
        self.times.append(time.monotonic())
        for key in ("start_date", "end_date"):
            if key in kwargs:
                assert re.fullmatch(r"\d{8}", kwargs[key]), (name, kwargs)

    def called(self, name: str) -> list[dict]:
        return [kw for n, kw in self.calls if n == name]

    @staticmethod
    def _window(frame: pd.DataFrame, column: str, start: str, end: str) -> pd.DataFrame:
        days = pd.to_datetime(frame[column].astype(str))
        return frame[(days >= pd.Timestamp(start)) & (days <= pd.Timestamp(end))].reset_index(drop=True)

    def stock_zh_index_hist_csindex(self, symbol="000928", start_date="20180526", end_date="20240604"):
        self._log("stock_zh_index_hist_csindex", symbol=symbol, start_date=start_date, end_date=end_date)
        return self._window(frames.csindex(symbol), "日期", start_date, end_date)

    def index_zh_a_hist(self, symbol="000859", period="daily", start_date="19700101", end_date="22220101"):
        self._log("index_zh_a_hist", symbol=symbol, period=period, start_date=start_date, end_date=end_date)
        return self._window(frames.em_index(symbol), "日期", start_date, end_date)

    def stock_zh_a_hist(self, symbol="000001", period="daily", start_date="19700101", end_date="20500101",
                        adjust="", timeout=None):
        self._log("stock_zh_a_hist", symbol=symbol, period=period, start_date=start_date,
                  end_date=end_date, adjust=adjust, timeout=timeout)
        return self._window(frames.stock_hist(symbol), "日期", start_date, end_date)

    def bond_china_yield(self, start_date="20200204", end_date="20210124"):
        self._log("bond_china_yield", start_date=start_date, end_date=end_date)
        span = dt.datetime.strptime(end_date, "%Y%m%d") - dt.datetime.strptime(start_date, "%Y%m%d")
        assert dt.timedelta(0) <= span < dt.timedelta(days=365), "ChinaBond: windows under one year"
        return frames.bond_china_yield(start_date, end_date)

    def stock_zh_a_spot_em(self):
        self._log("stock_zh_a_spot_em")
        return frames.spot()

    def fund_name_em(self):
        self._log("fund_name_em")
        return frames.fund_names()

    def fund_portfolio_hold_em(self, symbol="000001", date="2024"):
        self._log("fund_portfolio_hold_em", symbol=symbol, date=date)
        return frames.fund_holdings(symbol, date)


def settings(**overrides) -> AkshareConfig:
    base = dict(delay_seconds=0.0, timeout_seconds=2.0, retries=2, backoff_seconds=0.01,
                max_consecutive_failures=3, start_date=dt.date(2023, 1, 1))
    return AkshareConfig(**{**base, **overrides})


def source(ak=None, **overrides) -> AkshareSource:
    return AkshareSource(settings(**overrides), CAL, ak or FakeAk())


def by_series(rows) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for series, day, value, available, label in rows:
        assert available == day and label.startswith("akshare:")
        assert day not in out.setdefault(series, {}), (series, day)
        out[series][day] = value
    return out


# --- every function, normalised -------------------------------------------------------------------

def test_fetch_returns_every_series_in_canonical_units():
    ak = FakeAk()
    src = source(ak)
    fetched = src.fetch(AS_OF, SINCE)
    rows = fetched.rows
    assert fetched.failures == src.failures == {} and src.notes == []
    got = by_series(rows)
    expected = {f"index.{n}.{f}" for n in aks.INDICES.values() for f in ("close", "amount")}
    expected |= {f"theme.{t}.{f}" for t in ("930713", "H30184", "600519") for f in ("close", "amount")}
    expected |= {f"yield.{c}.{t}" for c in ("gov", "credit") for t in ("1y", "3y", "5y")}
    assert set(got) == expected
    assert all(list(v) == list(frames.DAYS) for v in got.values())
    # CSIndex 成交金额 is in 亿元: 1840.96 yi = 184,096,000,000 yuan
    assert got["index.csi300.amount"]["2024-01-02"] == pytest.approx(184_096_000_000.0)
    assert got["index.csi2000.amount"]["2024-01-05"] == pytest.approx(213_070_000_000.0)
    assert got["index.all_a.amount"]["2024-01-03"] == pytest.approx(718_654_000_000.0)
    assert got["index.csi300.close"]["2024-01-05"] == 3329.11
    assert got["theme.930713.amount"]["2024-01-02"] == pytest.approx(24_518_000_000.0)
    assert got["theme.H30184.close"]["2024-01-05"] == 4670.21
    # stock_zh_a_hist 成交额 is already in yuan; the close is back-adjusted (hfq)
    assert got["theme.600519.amount"]["2024-01-02"] == 5440082548.08
    assert got["theme.600519.close"]["2024-01-04"] == pytest.approx(1669.00 * 6.2)
    # ChinaBond yields stay in percent; the AAA MTN curve is the credit curve
    assert got["yield.gov.3y"]["2024-01-05"] == 2.2931
    assert got["yield.credit.3y"]["2024-01-03"] == 2.7437
    assert got["yield.credit.1y"]["2024-01-02"] == 2.5178
    assert got["yield.gov.5y"]["2024-01-04"] == 2.4089
    assert (got["yield.credit.3y"]["2024-01-05"] - got["yield.gov.3y"]["2024-01-05"]) * 100 == \
        pytest.approx(42.82)
    # the calls: CSIndex first (no fallback needed), hfq with a timeout for the stock, one bond window
    csi = ak.called("stock_zh_index_hist_csindex")
    assert [c["symbol"] for c in csi] == ["000300", "000905", "000852", "932000", "000985", "930713",
                                          "H30184"]
    assert all(c["start_date"] == "20231230" and c["end_date"] == "20240105" for c in csi)
    assert ak.called("index_zh_a_hist") == []
    assert ak.called("stock_zh_a_hist") == [dict(symbol="600519", period="daily", start_date="20231230",
                                                 end_date="20240105", adjust="hfq", timeout=2.0)]
    assert ak.called("bond_china_yield") == [dict(start_date="20231230", end_date="20240105")]


def test_fetch_keeps_only_the_rows_after_since():
    rows = source().fetch(AS_OF, dt.date(2024, 1, 3)).rows
    assert {r[1] for r in rows} == {"2024-01-04", "2024-01-05"}
    ak = FakeAk()
    assert source(ak).fetch(AS_OF, AS_OF) == Fetched([], {}) and ak.calls == []


def test_first_fetch_starts_at_start_date_with_bond_windows_under_one_year():
    ak = FakeAk()
    src = source(ak, start_date=dt.date(2022, 6, 1))
    rows = src.fetch(AS_OF, None).rows
    assert src.failures == {}
    windows = [(c["start_date"], c["end_date"]) for c in ak.called("bond_china_yield")]
    assert windows == [("20220601", "20230526"), ("20230527", "20240105")]
    assert ak.called("stock_zh_index_hist_csindex")[0]["start_date"] == "20220601"
    assert len(rows) == 4 * (10 + 6 + 6)
    assert aks.bond_windows(dt.date(2024, 1, 1), dt.date(2024, 1, 1)) == [(dt.date(2024, 1, 1),) * 2]


# --- schema checks --------------------------------------------------------------------------------

def test_a_renamed_column_names_function_and_column_and_the_others_proceed():
    ak = FakeAk()
    real = ak.stock_zh_index_hist_csindex

    def renamed(**kw):
        frame = real(**kw)
        return frame.rename(columns={"成交金额": "成交额"}) if kw["symbol"] == "000905" else frame

    def em_down(**kw):
        raise requests.exceptions.ConnectionError(
            "HTTPSConnectionPool(host='push2his.eastmoney.com', port=443): Max retries exceeded with url: "
            "/api/qt/stock/kline/get?secid=1.000905 (Caused by NameResolutionError(\"...\"))")

    ak.stock_zh_index_hist_csindex, ak.index_zh_a_hist = renamed, em_down
    src = source(ak, retries=0)
    got = by_series(src.fetch(AS_OF, SINCE).rows)
    reason = src.failures.pop("index.csi500.*")
    assert src.failures == {}
    assert reason.startswith("akshare stock_zh_index_hist_csindex: column '成交金额' missing (got: 日期, "
                             "指数代码, ")
    assert reason.endswith("; akshare index_zh_a_hist: ConnectionError: cannot reach push2his.eastmoney.com "
                           "(NameResolutionError) (1 attempt)")
    assert "\n" not in reason
    assert not any(s.startswith("index.csi500.") for s in got)  # nothing for that series
    assert len(got) == 10 - 2 + 6 + 6  # every other series is there


def test_the_eastmoney_fallback_serves_an_index_when_csindex_breaks():
    ak = FakeAk()
    real = ak.stock_zh_index_hist_csindex
    ak.stock_zh_index_hist_csindex = lambda **kw: (real(**kw).drop(columns="收盘")
                                                   if kw["symbol"] == "000300" else real(**kw))
    src = source(ak)
    got = by_series(src.fetch(AS_OF, SINCE).rows)
    assert src.failures == {}
    assert got["index.csi300.amount"]["2024-01-02"] == 184096097448.7  # EastMoney, in yuan
    assert got["index.csi300.close"]["2024-01-05"] == 3329.11
    assert [c["symbol"] for c in ak.called("index_zh_a_hist")] == ["000300"]
    assert len(src.notes) == 1 and "column '收盘' missing" in src.notes[0]
    assert src.notes[0].endswith("used the fallback index_zh_a_hist")


def test_eastmoney_amounts_capped_at_1e12_are_dropped():
    frame = frames.em_index("000985")
    frame.loc[1, "成交额"] = 1.0e12
    rows, notes = aks.history_rows("index.all_a", frame, aks.EM_INDEX, dt.date(2024, 1, 2),
                                   dt.date(2024, 1, 5), aks.INDEX_AMOUNT_RANGE)
    got = by_series(rows)
    assert "2024-01-03" not in got["index.all_a.amount"] and got["index.all_a.close"]["2024-01-03"] == 4376.82
    assert notes == ["index.all_a.amount: dropped 1 amounts capped at 1e12 yuan by index_zh_a_hist"]


def test_a_renamed_bond_column_or_curve_fails_only_the_yields_it_touches():
    ak = FakeAk()
    ak.bond_china_yield = lambda **kw: frames.bond_china_yield(**kw).rename(columns={"3年": "3Y"})
    src = source(ak)
    got = by_series(src.fetch(AS_OF, SINCE).rows)
    reason = ("akshare bond_china_yield: column '3年' missing (got: 曲线名称, 日期, 3月, 6月, 1年, 3Y, "
              "5年, 7年, 10年, 30年)")
    assert src.failures == {"yield.gov.*": reason, "yield.credit.*": reason}
    assert not any(s.startswith("yield.") for s in got) and len(got) == 16

    ak = FakeAk()

    def no_aaa(**kw):
        frame = frames.bond_china_yield(**kw)
        return frame[frame["曲线名称"] != frames.MTN].reset_index(drop=True)

    ak.bond_china_yield = no_aaa
    src = source(ak)
    got = by_series(src.fetch(AS_OF, SINCE).rows)
    assert list(src.failures) == ["yield.credit.*"]
    assert src.failures["yield.credit.*"] == (
        "akshare bond_china_yield: curve '中债中短期票据收益率曲线(AAA)' missing (got: "
        "中债商业银行普通债收益率曲线(AAA), 中债国债收益率曲线)")
    assert {s for s in got if s.startswith("yield.")} == {"yield.gov.1y", "yield.gov.3y", "yield.gov.5y"}


def test_full_width_curve_names_still_match():
    frame = frames.bond_china_yield()
    frame["曲线名称"] = frame["曲线名称"].str.replace("(AAA)", "（AAA）", regex=False)
    rows = aks.yield_rows(frame, "credit", dt.date(2024, 1, 2), dt.date(2024, 1, 5))
    assert len(rows) == 12


def test_a_unit_that_cannot_be_established_refuses_the_series():
    ak = FakeAk()
    real = ak.stock_zh_index_hist_csindex

    def in_yuan(**kw):  # the site switched 成交金额 to yuan: x1e8 would give 1.8e19 yuan a day
        frame = real(**kw)
        if kw["symbol"] == "000300":
            frame["成交金额"] = frame["成交金额"] * 1e8
        return frame

    ak.stock_zh_index_hist_csindex = in_yuan
    ak.index_zh_a_hist = lambda **kw: (_ for _ in ()).throw(KeyError("000300"))
    ak.bond_china_yield = lambda **kw: frames.bond_china_yield(**kw).assign(
        **{"3年": lambda f: f["3年"] / 100})
    src = source(ak, retries=0)
    got = by_series(src.fetch(AS_OF, SINCE).rows)
    assert src.failures["index.csi300.*"] == (
        "index.csi300.amount: cannot establish the unit of akshare stock_zh_index_hist_csindex '成交金额': "
        "median 1.739e+19 yuan after x1e+08 (1e8 yuan (亿元)) is outside 1e+09..1e+13; "
        "akshare index_zh_a_hist: KeyError: '000300' (1 attempt)")
    assert src.failures["yield.gov.*"] == (
        "yield.gov.3y: cannot establish the unit of akshare bond_china_yield '3年': median 0.023325 is "
        "not a yield in percent")
    assert "index.csi300.close" not in got and "yield.gov.1y" not in got
    assert "index.csi500.amount" in got


def test_no_rows_for_a_period_with_trading_days_is_a_failure():
    ak = FakeAk()
    src = source(ak)
    src.fetch(dt.date(2024, 1, 12), dt.date(2024, 1, 5))  # the recorded frames end on 2024-01-05
    assert set(src.failures) == {f"index.{n}.*" for n in aks.INDICES.values()} | {
        f"theme.{t}.*" for t in ("930713", "H30184", "600519")} | {"yield.gov.*", "yield.credit.*"}
    assert src.failures["index.csi300.*"] == (
        "akshare stock_zh_index_hist_csindex: no 000300 rows for 2024-01-06..2024-01-12; "
        "akshare index_zh_a_hist: no 000300 rows for 2024-01-06..2024-01-12")
    assert src.failures["yield.gov.*"] == ("akshare bond_china_yield: no 中债国债收益率曲线 rows for "
                                           "2024-01-06..2024-01-12")


# --- timeouts, retries, network errors ------------------------------------------------------------

def test_a_timeout_is_retried_then_the_series_fails_while_the_others_proceed():
    ak = FakeAk()
    attempts = []

    def hangs(**kw):
        attempts.append(time.monotonic())
        time.sleep(1.0)

    ak.stock_zh_a_hist = hangs
    src = source(ak, timeout_seconds=0.2, retries=2, backoff_seconds=0.05)
    started = time.monotonic()
    got = by_series(src.fetch(AS_OF, SINCE).rows)
    elapsed = time.monotonic() - started
    assert src.failures == {"theme.600519.*": "akshare stock_zh_a_hist: CallTimeout: no answer within 0.2 s "
                                              "(3 attempts)"}
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.2 + 0.05 - 0.01 and attempts[2] - attempts[1] >= 0.2 + 0.1 - 0.01
    assert len(got) == 20 and "theme.600519.close" not in got
    assert elapsed < 2.0  # 3 x 0.2 s + backoff 0.05 + 0.1 s, not 3 x 1 s


def test_retries_back_off_and_a_later_success_counts():
    ak = FakeAk()
    real, failures = ak.bond_china_yield, iter([OSError("reset by peer"), TimeoutError("read")])

    def flaky(**kw):
        error = next(failures, None)
        if error:
            raise error
        return real(**kw)

    ak.bond_china_yield = flaky
    waits = []
    src = AkshareSource(settings(backoff_seconds=3.0), CAL, ak, sleep=waits.append)
    got = by_series(src.fetch(AS_OF, SINCE).rows)
    assert src.failures == {} and "yield.gov.3y" in got
    assert waits == [3.0, 6.0]


def test_calls_are_sequential_with_the_configured_delay():
    ak = FakeAk()
    source(ak, delay_seconds=0.03).fetch(AS_OF, SINCE)
    gaps = np.diff(ak.times)
    assert len(ak.times) == 9 and (gaps >= 0.03 - 0.002).all()


def test_network_down_gives_one_line_per_series_quickly():
    class Down(FakeAk):
        def __getattribute__(self, name):
            if name.startswith(("stock_", "index_", "bond_", "fund_")):
                def refuse(**kw):
                    object.__getattribute__(self, "calls").append((name, kw))
                    raise requests.exceptions.ConnectionError(
                        f"HTTPSConnectionPool(host='{name}.example', port=443): Max retries exceeded with "
                        "url: /x?y=1 (Caused by NewConnectionError('<urllib3.connection.HTTPSConnection "
                        "object at 0x7f>: Failed to establish a new connection: [Errno 111] Connection "
                        "refused'))")
                return refuse
            return object.__getattribute__(self, name)

    ak = Down()
    src = source(ak, retries=2, backoff_seconds=0.01, delay_seconds=0.01)
    started = time.monotonic()
    fetched = src.fetch(AS_OF, SINCE)
    assert fetched.rows == [] and fetched.failures == src.failures
    assert time.monotonic() - started < 1.0
    # the first call is retried; after it the calls get one attempt each; after three failed calls
    # in a row the rest are not attempted
    assert [n for n, _ in ak.calls] == ["stock_zh_index_hist_csindex"] * 3 + [
        "index_zh_a_hist", "stock_zh_index_hist_csindex"]
    assert len(src.failures) == 10
    assert src.failures["index.csi300.*"] == (
        "akshare stock_zh_index_hist_csindex: ConnectionError: cannot reach "
        "stock_zh_index_hist_csindex.example (NewConnectionError) (3 attempts); akshare index_zh_a_hist: "
        "ConnectionError: cannot reach index_zh_a_hist.example (NewConnectionError) (1 attempt)")
    assert src.failures["yield.credit.*"] == ("akshare bond_china_yield: not attempted, the last 3 AKShare "
                                              "calls failed (upstream unreachable?)")
    assert all("\n" not in r and len(r) < 400 for r in src.failures.values())
    # the next fetch tries again
    src.fetch(AS_OF, SINCE)
    assert len(ak.calls) == 10


def test_after_a_failed_call_the_next_get_one_attempt_until_one_succeeds():
    ak = FakeAk()
    count: dict[str, int] = {}
    real_csi, real_em = ak.stock_zh_index_hist_csindex, ak.index_zh_a_hist

    def counted(real):
        def call(**kw):
            count[kw["symbol"]] = count.get(kw["symbol"], 0) + 1
            if kw["symbol"] in ("000905", "000852"):
                raise OSError("connection reset")
            return real(**kw)
        return call

    ak.stock_zh_index_hist_csindex, ak.index_zh_a_hist = counted(real_csi), counted(real_em)
    src = source(ak, retries=2, max_consecutive_failures=5)
    src.fetch(AS_OF, SINCE)
    # 000905: CSIndex 3 attempts, the EastMoney fallback 1; 000852: 1 + 1; 932000 succeeds at once
    assert (count["000905"], count["000852"], count["932000"]) == (4, 2, 1)
    assert set(src.failures) == {"index.csi500.*", "index.csi1000.*"}


def test_describe_keeps_one_short_line():
    text = aks.describe(requests.exceptions.ReadTimeout(
        "HTTPSConnectionPool(host='www.csindex.com.cn', port=443): Read timed out. (read timeout=15)"))
    assert text == "ReadTimeout: cannot reach www.csindex.com.cn"
    long = aks.describe(ValueError("x" * 500))
    assert long.endswith("...") and len(long) < 200
    assert aks.describe(KeyError()) == "KeyError"


def test_without_the_live_extra_the_error_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "akshare", None)  # "not installed"
    src = AkshareSource(settings(), CAL)
    with pytest.raises(AkshareUnavailable) as info:
        src.fetch(AS_OF, SINCE)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("the AKShare source needs the optional 'live' extra: "
                              "pip install 'regime-monitor[live]'")


def test_a_function_missing_from_the_installed_akshare_is_a_failure():
    ak = FakeAk()
    ak.index_zh_a_hist = None
    ak.stock_zh_index_hist_csindex = lambda **kw: (_ for _ in ()).throw(ValueError("Length mismatch"))
    src = source(ak, retries=0, max_consecutive_failures=50)
    src.fetch(AS_OF, SINCE)
    assert src.failures["index.csi300.*"] == (
        "akshare stock_zh_index_hist_csindex: ValueError: Length mismatch (1 attempt); "
        "akshare index_zh_a_hist: no such function in the installed akshare (pinned: 1.19.5)")


# --- the cross-section ----------------------------------------------------------------------------

def at(text: str):
    return lambda: dt.datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


def spot_source(ak=None, clock="2024-01-05T20:00", **overrides) -> AkshareSource:
    src = AkshareSource(settings(**overrides), CAL, ak or FakeAk(), clock=at(clock))
    src.min_cross_section = 5
    return src


def test_cross_section_rows_are_stock_panel_rows_in_yuan():
    src = spot_source()
    got = src.fetch_cross_section(AS_OF)
    frame = got.frame
    assert src.failures == got.failures == {}
    assert list(frame.columns) == list(aks.PANEL_COLUMNS)
    assert "830799" not in set(frame["code"])  # Beijing SE
    panel = frame.set_index("code")
    assert list(panel.index) == sorted(panel.index) and len(panel) == 10
    assert panel.loc["600519", "close"] == 1663.36 and panel.loc["600519", "total_mv"] == 2089509000000.0
    assert np.isnan(panel.loc["000004", "close"]) and panel.loc["000004", "total_mv"] == 1695000000.0
    st = panel["is_st"].to_dict()
    assert st["603389"] == st["300029"] == st["600242"] == 1  # *ST, ST, 退
    assert st["000020"] == st["600519"] == 0  # 深华发Ａ: the full-width Ａ is no ST
    assert set(frame["date"]) == set(frame["available_at"]) == {"2024-01-05"}
    assert set(frame["source"]) == {"akshare:stock_zh_a_spot_em"}


@pytest.mark.parametrize("clock,as_of,ok", [
    ("2024-01-05T20:00", "2024-01-05", True),
    ("2024-01-05T15:29", "2024-01-05", False),  # the close is not final yet
    ("2024-01-05T10:00", "2024-01-04", False),  # trading hours: neither day
    ("2024-01-06T11:00", "2024-01-05", True),  # Saturday: the Friday close
    ("2024-01-08T08:30", "2024-01-05", True),  # Monday before the call auction
    ("2024-01-08T20:00", "2024-01-05", False),  # history cannot come from the spot list
    ("2024-02-18T12:00", "2024-02-08", True),  # Sunday 2024-02-18 after the Spring Festival closure
])
def test_the_spot_list_is_dated_by_the_session_it_shows(clock, as_of, ok):
    ak = FakeAk()
    src = spot_source(ak, clock=clock)
    got = src.fetch_cross_section(dt.date.fromisoformat(as_of))
    frame = got.frame
    assert (not frame.empty) == ok and (not got.failures) == ok
    assert bool(ak.called("stock_zh_a_spot_em")) == ok
    if not ok:
        assert src.failures["stock_panel"].startswith(
            f"akshare stock_zh_a_spot_em: no cross-section for {as_of}")
        assert got.failures == {"stock_panel": src.failures["stock_panel"]}


def test_cross_section_schema_unit_and_truncation_errors():
    ak = FakeAk()
    ak.stock_zh_a_spot_em = lambda: frames.spot().rename(columns={"总市值": "总市值(元)"})
    src = spot_source(ak)
    assert src.fetch_cross_section(AS_OF).frame.empty
    assert src.failures["stock_panel"].startswith(
        "akshare stock_zh_a_spot_em: column '总市值' missing (got: 序号, 代码, 名称, 最新价,")
    ak.stock_zh_a_spot_em = lambda: frames.spot().assign(总市值=lambda f: f["总市值"] / 1e8)
    assert src.fetch_cross_section(AS_OF).frame.empty
    assert src.failures["stock_panel"] == (
        "stock_panel.total_mv: cannot establish the unit of akshare stock_zh_a_spot_em '总市值': "
        "median 28.27 is not a market cap in yuan")
    src = AkshareSource(settings(), CAL, FakeAk(), clock=at("2024-01-05T20:00"))  # min 2000 stocks
    assert src.fetch_cross_section(AS_OF).frame.empty
    assert src.failures["stock_panel"] == ("akshare stock_zh_a_spot_em: only 10 SH/SZ A-shares (expected at "
                                           "least 2000): a truncated list")
    assert src.fetch_cross_section(AS_OF).failures == {"stock_panel": src.failures["stock_panel"]}


def test_the_cross_section_uses_its_own_timeout():
    ak = FakeAk()
    ak.stock_zh_a_spot_em = lambda: time.sleep(0.5) or frames.spot()
    src = spot_source(ak, timeout_seconds=0.1, cross_section_timeout_seconds=2.0)
    assert len(src.fetch_cross_section(AS_OF).frame) == 10


# --- fund holdings --------------------------------------------------------------------------------

def test_holdings_of_the_active_funds_in_yuan_with_types():
    ak = FakeAk()
    src = source(ak)
    out = src.fetch_holdings(dt.date(2022, 12, 31))
    assert src.failures == {}
    assert list(out.columns) == list(aks.HOLDINGS_COLUMNS)
    # active: 000001 (混合型-偏股), 519674 (its C class 014143 shares the portfolio), 005669 (股票型);
    # not: 161725 指数型-股票, 110011 QDII, 000003 债券型
    assert [c["symbol"] for c in ak.called("fund_portfolio_hold_em")] == ["000001", "005669", "519674"]
    assert {c["date"] for c in ak.called("fund_portfolio_hold_em")} == {"2022"}
    assert out.groupby("fund_code").size().to_dict() == {"000001": 5, "005669": 2, "519674": 4}
    row = out[(out["fund_code"] == "000001") & (out["stock_code"] == "300395")].iloc[0]
    assert row["holding_value"] == pytest.approx(295_280_000.0)  # 29528.00 万元, the Q4 row (not Q3)
    assert row["fund_name"] == "华夏成长混合" and row["fund_type"] == "混合型-偏股"
    assert row["report_date"] == pd.Timestamp("2022-12-31")
    assert "00700" not in set(out["stock_code"])  # Hong Kong holding
    assert set(out[out["fund_code"] == "519674"]["fund_name"]) == {"银河创新成长混合A"}


def test_holdings_top_n_named_funds_and_errors():
    src = source()
    out = src.fetch_holdings(dt.date(2022, 12, 31), funds=["000001"], top=2)
    assert list(out["stock_code"]) == ["300395", "300593"]
    assert src.fetch_holdings(dt.date(2022, 9, 30), funds=["000001"])["holding_value"].sum() == \
        pytest.approx((31210.0 + 30700.0) * 1e4)
    with pytest.raises(ValueError, match="2022-12-30 is not a quarter end"):
        src.fetch_holdings(dt.date(2022, 12, 30))

    ak = FakeAk()
    real = ak.fund_portfolio_hold_em
    ak.fund_portfolio_hold_em = lambda **kw: (real(**kw).rename(columns={"持仓市值": "持仓市值（亿元）"})
                                              if kw["symbol"] == "000001" else real(**kw))
    src = source(ak)
    out = src.fetch_holdings(dt.date(2022, 12, 31))
    assert set(out["fund_code"]) == {"005669", "519674"}
    assert src.failures["fund_holdings"].startswith(
        "1 of 3 funds failed or not fetched; first: 000001: akshare fund_portfolio_hold_em: "
        "column '持仓市值' missing (got: 序号, 股票代码, 股票名称, 占净值比例, 持股数, "
        "持仓市值（亿元）, 季度)")

    ak = FakeAk()
    ak.fund_name_em = lambda: frames.fund_names().drop(columns="基金类型")
    src = source(ak)
    assert src.fetch_holdings(dt.date(2022, 12, 31)).empty
    assert src.failures["fund_holdings"].startswith("akshare fund_name_em: column '基金类型' missing")


# --- config and wiring ----------------------------------------------------------------------------

def test_config_section_and_make_source():
    config = parse_config('[source]\nkind = "akshare"\n[source.akshare]\ndelay_seconds = 2\nretries = 1\n'
                          'start_date = 2015-01-05\nthemes = { "930713" = "index", "600519" = "stock" }\n')
    ak = config.source.akshare
    assert (ak.delay_seconds, ak.retries, ak.start_date) == (2.0, 1, dt.date(2015, 1, 5))
    src = make_source(config)
    assert isinstance(src, AkshareSource) and src._ak is None  # akshare not imported yet
    assert src.settings.themes == {"930713": "index", "600519": "stock"}
    with pytest.raises(ConfigError, match=r"source.akshare.themes: .*'60051': a stock theme proxy needs a "
                                          r"6-digit A-share code"):
        parse_config('[source.akshare]\nthemes = { "60051" = "stock" }\n')
    with pytest.raises(ConfigError, match=r"source.akshare.retries"):
        parse_config('[source.akshare]\nretries = -1\n')
    with pytest.raises(ConfigError, match=r"source.akshare.proxy: unknown key"):
        parse_config('[source.akshare]\nproxy = "x"\n')


def test_the_pinned_version_is_the_live_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["optional-dependencies"]["live"] == [f"akshare=={aks.AKSHARE_VERSION}"]


def test_no_worker_thread_blocks_the_exit():
    ak = FakeAk()
    ak.stock_zh_a_hist = lambda **kw: time.sleep(0.3)
    source(ak, timeout_seconds=0.05, retries=0).fetch(AS_OF, SINCE)
    workers = [t for t in threading.enumerate() if t.name.startswith("akshare-")]
    assert workers and all(t.daemon for t in workers)


def test_the_fake_matches_the_installed_pinned_akshare():
    """With akshare 1.19.5 installed (the live extra): same parameters, and every recorded column is
    named in the function's source (bond_china_yield's 曲线名称 comes from the ChinaBond page)."""
    import inspect

    ak = pytest.importorskip("akshare")
    if ak.__version__ != aks.AKSHARE_VERSION:
        pytest.skip(f"akshare {ak.__version__} installed, not the pinned {aks.AKSHARE_VERSION}")
    recorded = {
        "stock_zh_index_hist_csindex": frames.CSINDEX_COLUMNS, "index_zh_a_hist": frames.EM_INDEX_COLUMNS,
        "stock_zh_a_hist": frames.STOCK_HIST_COLUMNS, "bond_china_yield": frames.BOND_COLUMNS[1:],
        "stock_zh_a_spot_em": frames.SPOT_COLUMNS, "fund_name_em": frames.FUND_NAME_COLUMNS,
        "fund_portfolio_hold_em": frames.HOLD_COLUMNS,
    }
    for name, columns in recorded.items():
        real = getattr(ak, name)
        assert list(inspect.signature(real).parameters) == list(
            inspect.signature(getattr(FakeAk, name)).parameters)[1:], name
        text = inspect.getsource(real)
        assert all(f'"{c}"' in text for c in columns), name
    assert '"持仓市值（万元）": "持仓市值"' in inspect.getsource(ak.fund_portfolio_hold_em)


# --- the polite-call machinery on its own (monitor.sources.polite) ---------------------------------

def test_polite_caller_pauses_retries_with_backoff_and_opens_the_circuit():
    from monitor.sources.polite import CallFailed, PoliteCaller, Skipped

    clock = [100.0]
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock[0] += seconds

    caller = PoliteCaller(settings(delay_seconds=2.0, retries=2, backoff_seconds=3.0,
                                   max_consecutive_failures=2),
                          sleep=sleep, monotonic=lambda: clock[0])
    assert caller.call("f", lambda x: x * 2, x=21) == 42 and waits == []  # the first call: no pause
    assert caller.call("f", lambda: "again") == "again"
    assert waits == [2.0]  # delay_seconds since the previous call

    def boom() -> None:
        raise ValueError("upstream said no")

    waits.clear()
    with pytest.raises(CallFailed, match=r"^akshare g: ValueError: upstream said no \(3 attempts\)$"):
        caller.call("g", boom)
    assert waits == [2.0, 3.0, 6.0]  # pause, then backoff 3 s, 6 s (each wait covers the delay)
    assert caller.consecutive == 1
    waits.clear()
    with pytest.raises(CallFailed, match=r"\(1 attempt\)$"):  # after a failure: one attempt
        caller.call("g", boom)
    with pytest.raises(Skipped, match="not attempted, the last 2 AKShare calls failed"):
        caller.call("g", lambda: "never called")
    clock[0] += 601  # an old run of failures says nothing about the upstream now
    caller.forget_stale_failures()
    assert caller.call("g", lambda: "back") == "back" and caller.consecutive == 0
