"""The database schema as an ordered list of migrations, recorded in ``_sqlite_migrations``.

Add a migration by appending a new function; never edit one that has shipped.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

migrations = Migrations("regime-monitor")


@migrations()
def m001_initial(db: Database) -> None:
    """Create the tables of DESIGN.md."""
    db.executescript(
        """
        CREATE TABLE observations (
            series TEXT NOT NULL,          -- canonical series name (SIGNALS.md)
            date TEXT NOT NULL,            -- ISO trading day the value describes
            value REAL NOT NULL,           -- canonical unit (yuan, points, percent, ...)
            available_at TEXT NOT NULL,    -- ISO day from which the value may be used
            source TEXT NOT NULL,          -- demo | csv:<file> | akshare:<function>
            imported_at TEXT NOT NULL,     -- UTC timestamp of the write
            PRIMARY KEY (series, date)
        ) WITHOUT ROWID;
        CREATE INDEX observations_available ON observations (available_at);

        CREATE TABLE signal_values (
            signal TEXT NOT NULL,
            date TEXT NOT NULL,
            value REAL,                    -- NULL: not computable from the data known that day
            context TEXT,                  -- JSON, e.g. the hot theme's name
            PRIMARY KEY (signal, date)
        ) WITHOUT ROWID;

        CREATE TABLE alerts (
            rule TEXT PRIMARY KEY,
            severity TEXT NOT NULL,
            state TEXT NOT NULL,           -- inactive | pending | firing | resolved | no_data
            state_json TEXT NOT NULL,      -- full lifecycle state after last_evaluated
            prev_state_json TEXT,          -- state before last_evaluated (makes re-runs idempotent)
            last_evaluated TEXT NOT NULL,
            since TEXT,                    -- trading day the current state began
            last_values TEXT               -- JSON of the signal values last evaluated
        );

        CREATE TABLE alert_events (
            id INTEGER PRIMARY KEY,
            rule TEXT NOT NULL,
            date TEXT NOT NULL,
            event TEXT NOT NULL,           -- pending|firing|repeat|resolved|cancelled|no_data|data_back
            from_state TEXT NOT NULL,
            to_state TEXT NOT NULL,
            severity TEXT NOT NULL,
            signal_values TEXT NOT NULL,   -- JSON: the values that caused the transition
            silenced_by INTEGER,           -- silences.id when the notification was muted
            notified INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX alert_events_date ON alert_events (date, rule);

        CREATE TABLE silences (
            id INTEGER PRIMARY KEY,
            matcher TEXT NOT NULL,         -- a rule name, or '*' for all rules
            until TEXT NOT NULL,           -- ISO day, inclusive
            reason TEXT NOT NULL,
            created_at TEXT NOT NULL,
            expired_at TEXT                -- set by `silence expire`
        );

        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            dedup_key TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,            -- digest
            as_of TEXT NOT NULL,
            payload TEXT NOT NULL,         -- JSON digest
            created_at TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT NOT NULL,
            last_error TEXT,
            sent_at TEXT,
            failed_at TEXT,                -- permanent failure: no more attempts
            destination TEXT
        );

        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            job TEXT NOT NULL,             -- cycle | import
            as_of TEXT NOT NULL,
            started TEXT NOT NULL,
            finished TEXT,
            status TEXT NOT NULL,          -- ok | failed
            error TEXT,
            detail TEXT                    -- JSON: counts of rows written
        );
        CREATE INDEX runs_job_asof ON runs (job, as_of);

        CREATE TABLE episodes (
            id INTEGER PRIMARY KEY,
            kind TEXT NOT NULL,            -- drawdown | rotation
            start TEXT NOT NULL,
            peak TEXT,
            trough TEXT,
            end TEXT,                      -- recovery / last day; NULL while open
            depth REAL,                    -- fraction, negative for drawdowns
            detail TEXT,                   -- JSON
            UNIQUE (kind, start)
        );

        CREATE TABLE stock_panel (
            date TEXT NOT NULL,
            code TEXT NOT NULL,            -- 6-digit exchange code
            close REAL,                    -- unadjusted close, yuan
            total_mv REAL,                 -- total market cap, yuan
            is_st INTEGER NOT NULL,        -- 1 while ST/*ST
            available_at TEXT NOT NULL,
            source TEXT NOT NULL,
            PRIMARY KEY (date, code)
        ) WITHOUT ROWID;
        """
    )


@migrations()
def m002_regime_fits(db: Database) -> None:
    """Cache of the regime model's monthly fits (statsmodels params, states ordered by variance)."""
    db.executescript(
        """
        CREATE TABLE regime_fits (
            valid_from TEXT PRIMARY KEY,   -- first trading day the fit is used
            fit_through TEXT NOT NULL,     -- last day of data in the fit
            fit_json TEXT NOT NULL
        );
        """
    )


@migrations()
def m003_panel_listed_days(db: Database) -> None:
    """Listed-day counts per stock, carried day by day for the micro-cap index continuation."""
    db.executescript(
        """
        CREATE TABLE panel_listed_days (
            code TEXT NOT NULL,
            as_of TEXT NOT NULL,           -- the trading day the count is for
            days INTEGER NOT NULL,         -- panel days since the stock's first close
            PRIMARY KEY (code, as_of)
        ) WITHOUT ROWID;
        """
    )


@migrations()
def m004_fund_holdings(db: Database) -> None:
    """Raw fund holdings per report, so a quarter's allocation can use the previous report's."""
    db.executescript(
        """
        CREATE TABLE fund_reports (
            coverage TEXT NOT NULL,        -- top10 (quarterly reports) | full (semi-annual/annual)
            report_date TEXT NOT NULL,     -- ISO quarter end
            fund_code TEXT NOT NULL,       -- 6-digit fund code (one share class or all of them)
            fund_name TEXT NOT NULL,
            fund_type TEXT,                -- e.g. AKShare fund_name_em 基金类型; NULL: unknown
            holdings INTEGER NOT NULL,     -- stock rows stored (0: the fund held no SH/SZ A-share)
            source TEXT NOT NULL,          -- akshare:fund_portfolio_hold_em | csv:<file>
            fetched_at TEXT NOT NULL,      -- UTC timestamp of the first write
            PRIMARY KEY (coverage, report_date, fund_code)
        ) WITHOUT ROWID;

        CREATE TABLE fund_holdings (
            coverage TEXT NOT NULL,
            report_date TEXT NOT NULL,
            fund_code TEXT NOT NULL,
            stock_code TEXT NOT NULL,      -- 6-digit A-share code
            holding_value REAL NOT NULL,   -- yuan
            PRIMARY KEY (coverage, report_date, fund_code, stock_code)
        ) WITHOUT ROWID;
        """
    )


@migrations()
def m005_risk_fits_and_scorecards(db: Database) -> None:
    """The drawdown-risk model's monthly fits, and the measured skill of rules (``backtest --record``)."""
    db.executescript(
        """
        CREATE TABLE risk_fits (
            valid_from TEXT PRIMARY KEY,   -- first trading day the fit is used
            fit_through TEXT NOT NULL,     -- last day of data in the fit (labels known by then)
            fit_json TEXT NOT NULL
        );

        CREATE TABLE scorecards (
            rule TEXT PRIMARY KEY,         -- a rule name, or "any warning"
            start TEXT NOT NULL,           -- ISO first day of the scored period
            end TEXT NOT NULL,             -- ISO last day of the scored period
            computed_at TEXT NOT NULL,     -- UTC timestamp of the backtest that measured it
            score_json TEXT NOT NULL       -- the backtest's score row (caught, chance, p, false/yr ...)
        );
        """
    )


@migrations()
def m006_outbox_posted_message(db: Database) -> None:
    """The outbox remembers the message Slack accepted (its channel and ts) and whether the
    digest's chart is still to be uploaded into that message's thread."""
    db.executescript(
        """
        ALTER TABLE outbox ADD COLUMN posted_channel TEXT;  -- channel id Slack answered
        ALTER TABLE outbox ADD COLUMN posted_ts TEXT;       -- Slack's ts of the accepted message
        ALTER TABLE outbox ADD COLUMN chart_due INTEGER NOT NULL DEFAULT 0;  -- 1: sent, chart to upload
        """
    )


@migrations()
def m007_observation_revisions(db: Database) -> None:
    """The earlier values of revised observations, kept by a trigger when a value is replaced by
    one known later, so a point-in-time read before a revision still sees them."""
    db.executescript(
        """
        CREATE TABLE observation_revisions (
            series TEXT NOT NULL,
            date TEXT NOT NULL,
            value REAL NOT NULL,           -- the value as known before the revision
            available_at TEXT NOT NULL,    -- ISO day from which that value was known
            superseded_at TEXT NOT NULL,   -- ISO day the revised value became known (exclusive)
            source TEXT NOT NULL,
            imported_at TEXT NOT NULL      -- UTC timestamp of the earlier value's write
        );
        CREATE INDEX observation_revisions_key ON observation_revisions (series, date);
        CREATE TRIGGER observations_keep_revised AFTER UPDATE OF value ON observations
        WHEN OLD.value IS NOT NEW.value AND OLD.available_at < NEW.available_at
        BEGIN
            INSERT INTO observation_revisions (series, date, value, available_at, superseded_at,
                                               source, imported_at)
            VALUES (OLD.series, OLD.date, OLD.value, OLD.available_at, NEW.available_at,
                    OLD.source, OLD.imported_at);
        END;
        """
    )


@migrations()
def m008_product_navs(db: Database) -> None:
    """The NAVs of the PM's products (issue 16), with the day each became known; earlier values
    of revised NAVs are kept by a trigger, as for observations (m007)."""
    db.executescript(
        """
        CREATE TABLE product_navs (
            product TEXT NOT NULL,         -- product name, as in [[products]] name
            date TEXT NOT NULL,            -- ISO day the NAV is for
            nav REAL NOT NULL,             -- unit or adjusted NAV (any positive scale)
            available_at TEXT NOT NULL,    -- ISO day from which the NAV may be used
            source TEXT NOT NULL,          -- csv:<file>
            imported_at TEXT NOT NULL,     -- UTC timestamp of the write
            PRIMARY KEY (product, date)
        ) WITHOUT ROWID;

        CREATE TABLE product_nav_revisions (
            product TEXT NOT NULL,
            date TEXT NOT NULL,
            nav REAL NOT NULL,             -- the NAV as known before the revision
            available_at TEXT NOT NULL,    -- ISO day from which that NAV was known
            superseded_at TEXT NOT NULL,   -- ISO day the revised NAV became known (exclusive)
            source TEXT NOT NULL,
            imported_at TEXT NOT NULL
        );
        CREATE INDEX product_nav_revisions_key ON product_nav_revisions (product, date);
        CREATE TRIGGER product_navs_keep_revised AFTER UPDATE OF nav ON product_navs
        WHEN OLD.nav IS NOT NEW.nav AND OLD.available_at < NEW.available_at
        BEGIN
            INSERT INTO product_nav_revisions (product, date, nav, available_at, superseded_at,
                                               source, imported_at)
            VALUES (OLD.product, OLD.date, OLD.nav, OLD.available_at, NEW.available_at,
                    OLD.source, OLD.imported_at);
        END;
        """
    )


def apply(db: Database) -> None:
    """Apply pending migrations (each in its own transaction)."""
    migrations.apply(db)
