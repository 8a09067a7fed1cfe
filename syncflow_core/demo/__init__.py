"""A bundled, deterministic, messy demo ERP (SQLite) and its ``syncflow.yaml``.

``generate_demo_erp`` writes the initial ERP, ``apply_business_day`` one day of changes
(updates, inserts, deletes, late parent orders, a new column). ``DEMO_CONFIG`` is the config
that syncs it; it names its databases by environment variable (``SYNCFLOW_ERP_URL``,
``SYNCFLOW_TARGET_URL``, ``SYNCFLOW_STATE_URL``), which the demo runner sets.
"""

from pathlib import Path

from syncflow_core.demo.changes import apply_business_day
from syncflow_core.demo.erp import (
    DEMO_TABLES,
    LATE_ORDERS_TABLE,
    generate_demo_erp,
    insert_late_orders,
    pending_late_orders,
)

__all__ = [
    "DEMO_CONFIG",
    "DEMO_TABLES",
    "LATE_ORDERS_TABLE",
    "apply_business_day",
    "generate_demo_erp",
    "insert_late_orders",
    "pending_late_orders",
]

DEMO_CONFIG = Path(__file__).with_name("syncflow.yaml")
"""Path of the bundled demo ``syncflow.yaml``."""
