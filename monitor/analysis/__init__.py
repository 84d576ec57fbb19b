"""Looking back: the evidence a backtest is scored on (``evidence``), replay into a scratch
database (``replay``), honest scoring, sweeps and calibration (``backtest``), forecast scores
(``forecast``) and the HTML report (``report``)."""
