"""What the digest of 2024-01-22 would have said about the PM's index-enhanced products (issue 16).

Run:  .venv/bin/python benchmarks/digest_2024_01_22.py [--config config/monitor.toml] [--start 2014-01-02]

Reads ../shared/data/real (never copied): the real indices, Wind micro-cap, themes and ChinaBond
yields, and the weekly NAVs of the private quant products (tests/realdata.py). Every
index-enhanced product (500-, 1000- and 300-enhanced, benchmarked by strategy) is declared in
``[[products]]`` of the shipped config (no weights: the PM's book is not known). The daily cycle
is replayed with the shipped rules from ``--start`` through 2024-01-22 (``regime-monitor replay``'s
code: nothing is sent), the NAVs are imported into the replay's database with the documented
``import-csv`` format (``date,product,nav``: each NAV known ``exposure.nav_lag_days`` XSHG trading
days after its date), and the digest the cycle queued for 2024-01-22 goes through delivery's
``prepare`` (the closest past episode, and the products' exposure block when a micro-cap warning
is new) and is printed as the console prints it. The script says whether a micro-cap warning
(a NEW warning or critical alert compared with past drawdowns) fired that day.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.analysis.replay import replay  # noqa: E402
from monitor.config import parse_config  # noqa: E402
from monitor.delivery import digest  # noqa: E402
from monitor.delivery.console import ConsoleNotifier  # noqa: E402
from monitor.delivery.deliver import prepare  # noqa: E402
from monitor.sources.csv_import import import_files, import_report  # noqa: E402
from storage.db import open_db  # noqa: E402
from tests import realdata  # noqa: E402

REAL = ROOT.parent / "shared" / "data" / "real"
DAY = dt.date(2024, 1, 22)
DATA_END = "2024-02-08"  # the source database holds data after the day; replay reads it point-in-time


def products_toml(meta: pd.DataFrame) -> str:
    """The ``[[products]]`` tables of every index-enhanced product (benchmark by strategy)."""
    enhanced = meta[meta["strategy"].isin(list(realdata.STRATEGY_BENCHMARK))]
    out = []
    for name, row in enhanced.sort_index().iterrows():
        out.append(f"[[products]]\nname = {json.dumps(str(name), ensure_ascii=False)}\n"
                   f"benchmark = \"{row['benchmark']}\"\nstrategy = \"{row['strategy']}\"\n")
    return "\n".join(out)


def digest_of_the_day(source, config_path: Path, meta: pd.DataFrame, navs_csv: Path,
                      start: dt.date, tmp: Path) -> bool:
    """Replay ``config_path``'s rules (plus the products) through DAY, import the NAVs, print the
    digest queued for DAY after delivery's ``prepare``; return whether a micro-cap warning (a NEW
    warning or critical alert compared with past drawdowns) fired that day."""
    text = config_path.read_text(encoding="utf-8") + "\n" + products_toml(meta)
    config = parse_config(text, f"{config_path} + the index-enhanced products")
    label = config_path.relative_to(ROOT)
    warnings = [r.name for r in config.rules if r.severity in digest.TRIGGER_SEVERITIES]
    print(f"\n=== {label}: {len(config.rules)} rules, warning/critical: "
          f"{', '.join(warnings) or 'none'}; {len(config.products)} products declared; "
          f"exposure.nav_lag_days = {config.exposure.nav_lag_days}, rank window "
          f"{config.exposure.rank_window_weeks} NAV intervals, digest_top = "
          f"{config.exposure.digest_top}")
    t0 = time.perf_counter()
    result = replay(source, config, start, DAY, tmp / f"replay-{config_path.stem}.db")
    seconds = time.perf_counter() - t0
    db = result.db
    [done] = import_report(db, [navs_csv], nav_lag_days=config.exposure.nav_lag_days)
    known = db.execute("SELECT COUNT(DISTINCT product), MAX(date) FROM product_navs "
                       "WHERE available_at <= ?", [DAY.isoformat()]).fetchone()
    print(f"replayed {start} .. {DAY} ({len(result.days)} trading days) in {seconds:.1f} s; "
          f"NAV rows imported: {done.changed}; products with a NAV known on {DAY}: {known[0]} "
          f"(latest NAV date known: {known[1]})")
    changes = [e for e in result.events if e["date"] == DAY.isoformat()
               and e["event"] in ("firing", "resolved")]
    print(f"alert changes on {DAY}: " + (", ".join(
        f"{e['rule']} {e['event']}" for e in changes) or "none"))
    rows = [json.loads(r[0]) for r in db.execute(
        "SELECT payload FROM outbox WHERE kind = 'digest' ORDER BY id").fetchall()]
    today = [p for p in rows if p.get("as_of") == DAY.isoformat()]
    if not today:
        print(f"No micro-cap warning fired on {DAY} with these rules, and no digest was queued "
              "(info-severity changes never send one).")
        db.close()
        return False
    t0 = time.perf_counter()
    payload = prepare(db, today[-1], config)
    prepared = time.perf_counter() - t0
    bare = time.perf_counter()
    prepare(db, today[-1])  # the same without the config: the closest episode only
    bare = time.perf_counter() - bare
    print(f"delivery's prepare: {prepared:.2f} s with the exposure block, {bare:.2f} s without "
          "(the closest episode only)")
    new_dd = digest.microcap_warnings(payload)
    if new_dd:
        print(f"A micro-cap warning fired on {DAY} with these rules: "
              + ", ".join(f"{i['rule']} ({i['severity']}, NEW)" for i in new_dd)
              + ("; the digest lists the most exposed products" if "exposure" in payload
                 else "; no exposure block (no product with a known NAV and a beta)"))
    else:
        print(f"No micro-cap warning became new on {DAY} with these rules (the digest carries "
              "no exposure block).")
    out = io.StringIO()
    ConsoleNotifier(out).send(payload, f"digest:{DAY}")
    print(f"The digest of {DAY} as the console prints it:")
    print(out.getvalue(), end="")
    db.close()
    return bool(new_dd)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, action="append",
                    help="config(s) to replay (default: the shipped config/monitor.toml, then "
                         "config/note_conditions.toml, the note's conditions as warnings)")
    ap.add_argument("--start", type=dt.date.fromisoformat, default=dt.date(2014, 1, 2))
    args = ap.parse_args(argv)
    configs = [p.resolve() for p in args.config] if args.config else [
        ROOT / "config" / "monitor.toml", ROOT / "config" / "note_conditions.toml"]
    if not REAL.is_dir():
        print(f"no real data at {REAL}", file=sys.stderr)
        return 2
    with open("/proc/loadavg") as fh:
        print(f"load: {fh.read().strip()}")
    long, meta = realdata.navs(REAL)
    enhanced = meta[meta["strategy"].isin(list(realdata.STRATEGY_BENCHMARK))]
    print(f"products: {len(enhanced)} index-enhanced of {len(meta)} in the NAV file ("
          + ", ".join(f"{n} {s}" for s, n in enhanced["strategy"].value_counts().sort_index().items())
          + "), declared without weights")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        frame = pd.concat([realdata.indices(REAL, "2014-01-01", DATA_END),
                           realdata.themes(REAL, "2014-01-01", DATA_END),
                           realdata.yields(REAL, "2008-04-22", DATA_END)])
        source = open_db(tmp / "real.db")
        import_files(source, [realdata.write_csv(frame, tmp / "real.csv")])
        navs_csv = tmp / "navs.csv"
        long.to_csv(navs_csv, index=False)  # the documented format: date,product,nav
        for path in configs:
            digest_of_the_day(source, path, meta, navs_csv, args.start, tmp)
        source.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
