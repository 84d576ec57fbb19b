"""Alerting, all pure: rule expressions and their three-valued evaluation (``expr``), rules
(``rules``), the alert lifecycle (``lifecycle``) and the regime context line (``context``)."""
