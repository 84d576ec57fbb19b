"""storage.stock_panel: the one stock_panel upsert (the cycle's cross-section and import-csv)."""

from __future__ import annotations

import math

from storage import stock_panel
from storage.db import open_db


def _rows(db):
    return db.execute("SELECT date, code, close, total_mv, is_st, available_at, source FROM "
                      "stock_panel ORDER BY date, code").fetchall()


def test_a_changed_value_updates_values_and_source_an_identical_row_changes_nothing(db_path):
    db = open_db(db_path)
    first = [("2024-01-02", "000001", 10.0, 1e9, 0, "2024-01-02", "akshare:stock_zh_a_spot_em"),
             ("2024-01-02", "000002", 20.0, 2e9, 1, "2024-01-02", "akshare:stock_zh_a_spot_em")]
    with db.atomic():
        assert stock_panel.upsert(db, first) == 2
    with db.atomic():  # the same values again, whatever the source: nothing changes
        assert stock_panel.upsert(db, [(*r[:6], "csv:panel.csv") for r in first]) == 0
    assert _rows(db) == first
    revised = [("2024-01-02", "000001", 10.5, 1e9, 0, "2024-01-09", "csv:panel.csv"),  # close
               ("2024-01-02", "000002", 20.0, 2e9, 0, "2024-01-09", "csv:panel.csv")]  # is_st
    with db.atomic():
        assert stock_panel.upsert(db, revised) == 2
    # the values and the source follow the new row; available_at stays the first one written
    assert _rows(db) == [("2024-01-02", "000001", 10.5, 1e9, 0, "2024-01-02", "csv:panel.csv"),
                         ("2024-01-02", "000002", 20.0, 2e9, 0, "2024-01-02", "csv:panel.csv")]
    with db.atomic():  # a changed market cap alone is a change too; a null close replaces a close
        assert stock_panel.upsert(db, [("2024-01-02", "000001", None, 1.1e9, 0, "2024-01-10", "x")]) == 1
    assert _rows(db)[0] == ("2024-01-02", "000001", None, 1.1e9, 0, "2024-01-02", "x")


def test_reads_of_the_panel_and_the_listed_day_counts(db_path):
    db = open_db(db_path)
    with db.atomic():
        stock_panel.upsert(db, [
            ("2024-01-02", "000001", 10.0, 1e9, 0, "2024-01-02", "t"),
            ("2024-01-02", "000002", None, 2e9, 0, "2024-01-02", "t"),
            ("2024-01-03", "000001", 11.0, 1.2e9, 0, "2024-01-03", "t"),
            ("2024-01-03", "000002", 21.0, None, 0, "2024-01-03", "t")])
    day = stock_panel.on_day(db, "2024-01-03").sort_values("code")
    assert day[["code", "close", "is_st"]].to_dict("list") == {
        "code": ["000001", "000002"], "close": [11.0, 21.0], "is_st": [0, 0]}
    assert day["total_mv"].iloc[0] == 1.2e9 and math.isnan(day["total_mv"].iloc[1])
    assert stock_panel.on_day(db, "2024-01-04").empty
    assert stock_panel.traded_days_through(db, "2024-01-03") == {"000001": 2, "000002": 1}
    # the latest cap in the window wins; a null cap is skipped
    assert stock_panel.caps_between(db, "2024-01-01", "2024-01-03") == {"000001": 1.2e9, "000002": 2e9}
    with db.atomic():
        assert stock_panel.store_listed_days(db, "2024-01-02", {"000001": 5}, "2024-01-02") == 1
        assert stock_panel.store_listed_days(db, "2024-01-03", {"000001": 6, "000002": 1},
                                             keep_from="2024-01-03") == 3  # 2 written, 1 pruned
    assert stock_panel.listed_days(db, "2024-01-02") == {}
    assert stock_panel.listed_days(db, "2024-01-03") == {"000001": 6, "000002": 1}
