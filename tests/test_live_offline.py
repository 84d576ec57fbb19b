"""The live (AKShare) source without a network: `once` ends quickly with one line per failed
series, a fetch_failed run, the data_stale alert, and no traceback.

The network is taken away by a stand-in `akshare` package (first on PYTHONPATH) whose functions
fail the way requests does when no host can be reached; the test contacts no outside address.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from storage.db import open_db
from tests.conftest import DEFAULT_CONFIG

NO_NETWORK_AKSHARE = '''
"""Stand-in for akshare on a machine without network: every call fails to connect."""
__version__ = "1.19.5"


def _down(*args, **kwargs):
    raise ConnectionError("HTTPSConnectionPool: Max retries exceeded (Failed to establish a new "
                          "connection: [Errno -3] Temporary failure in name resolution)")


stock_zh_index_hist_csindex = index_zh_a_hist = stock_zh_a_hist = bond_china_yield = _down
stock_zh_a_spot_em = fund_name_em = fund_portfolio_hold_em = _down
'''


def test_once_without_network(tmp_path):
    fake = tmp_path / "offline" / "akshare"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(NO_NETWORK_AKSHARE)
    # a database that had data up to 2024-01-02 (from the demo), then the network went away
    db_path = tmp_path / "live.db"
    exe = Path(sys.executable).parent / "regime-monitor"
    demo_cfg = tmp_path / "demo.toml"
    demo_cfg.write_text(DEFAULT_CONFIG.read_text())
    assert subprocess.run([str(exe), "--config", str(demo_cfg), "--db", str(db_path), "once",
                           "--as-of", "2024-01-02"], capture_output=True, timeout=120).returncode == 0
    live_cfg = tmp_path / "live.toml"
    live_cfg.write_text(DEFAULT_CONFIG.read_text().replace('kind = "demo"', 'kind = "akshare"'))
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "offline"))
    start = time.monotonic()
    proc = subprocess.run([str(exe), "--config", str(live_cfg), "--db", str(db_path), "once",
                           "--as-of", "2024-01-09"], capture_output=True, text=True, timeout=90,
                          env=env)
    elapsed = time.monotonic() - start
    assert elapsed < 60, elapsed
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert proc.returncode == 1
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("regime-monitor: error: ")]
    assert len(errors) >= 5  # one line per failed series group (indices, curves, themes)
    assert any("index.csi300" in ln for ln in errors) and any("yield." in ln for ln in errors)
    assert all("Temporary failure in name resolution" in ln or "not attempted" in ln
               or "connection" in ln.lower() or "no cross-section" in ln or "cannot continue" in ln
               for ln in errors), errors
    assert "2024-01-09: fetch_failed" in proc.stdout
    db = open_db(db_path)
    status, error = db.execute("SELECT status, error FROM runs WHERE as_of = '2024-01-09'").fetchone()
    assert status == "fetch_failed" and "index.csi300" in error
    # 2024-01-02 .. 2024-01-09 is 5 trading days: the required series are stale
    state = db.execute("SELECT state FROM alerts WHERE rule = 'data_stale'").fetchone()
    assert state == ("firing",)
