"""A tiny, messy ERP for pipeline tests: real tables on SQLite or PostgreSQL.

Every product is kept twice: the clean values the target must end up with, and the messy text
the ERP stores (padded codes, text numbers with thousands separators, dates as text in two
formats). Tests compare the target with the clean values, so normalization is checked
independently of how it is implemented.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from syncflow_core.config import SyncFlowConfig, parse_config
from syncflow_core.pipeline import SyncCounts, sync_slice
from syncflow_core.runtime import Runtime
from syncflow_core.slices import slice_keys

SLICES = 3
CHUNK = 7


@dataclass(frozen=True)
class Product:
    """One product as the target must hold it, plus its source row version."""

    code: str
    name: str
    price: Decimal
    qty: int
    created: date
    rowver: int
    color: str | None = None

    def messy(self, i: int) -> dict[str, Any]:
        """The row as the ERP stores it (varies with ``i`` so every form occurs)."""
        price = f"{self.price:,.2f}" if i % 3 == 0 else f" {self.price} "
        created = (
            self.created.isoformat() if i % 2 else self.created.strftime("%d.%m.%Y")
        )
        return {
            "CODE": self.code + " " * (i % 3),  # CHAR-style trailing padding
            "NAME": f"  {self.name} " if i % 2 else self.name,
            "PRICE": price,
            "QTY": f" {self.qty}" if i % 4 == 0 else str(self.qty),
            "CREATED": created,
            "ROWVER": self.rowver,
        }


def _variant(code: str) -> int:
    return sum(map(ord, code))


def products(n: int) -> list[Product]:
    """``n`` products; row versions deliberately not in key order (as in a real ERP)."""
    return [
        Product(
            code=f"P{i:04d}",
            name=f"Widget {i}",
            price=Decimal(f"{(i * 37) % 2000}.{i % 100:02d}") + Decimal(1000 * (i % 2)),
            qty=i * 3,
            created=date(2023, 1 + i % 12, 1 + i % 28),
            rowver=1000 + (i * 7919) % 997,
        )
        for i in range(1, n + 1)
    ]


def entity_config(
    name: str = "products",
    strategy: str = "hash",
    *,
    table: str = "PRODUCTS",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The entity block for a products-shaped source table."""
    body: dict[str, Any] = {
        "source": {"connection": "erp", "table": table},
        "target_table": name,
        "business_key_fields": ["code"],
        "delta_strategy": strategy,
        "fields": {
            "PRICE": {"type": "NUMBER(12,2)", "decimal_separator": "."},
            "QTY": {"type": "NUMBER(10)"},
            "CREATED": {"type": "DATE", "date_formats": ["%d.%m.%Y", "%Y-%m-%d"]},
            "ROWVER": {"type": "NUMBER(19)"},
        },
        "field_mappings": [
            {"op": "rename", "field": "CODE", "to": "code"},
            {"op": "rename", "field": "NAME", "to": "name"},
            {"op": "rename", "field": "PRICE", "to": "price"},
            {"op": "rename", "field": "QTY", "to": "qty"},
            {"op": "rename", "field": "CREATED", "to": "created"},
            {"op": "rename", "field": "ROWVER", "to": "rowver"},
        ],
        "slices": SLICES,
        "chunk_size": CHUNK,
    }
    if strategy == "rowversion":
        body["rowversion_field"] = "rowver"
    body.update(extra or {})
    return body


def make_config(
    source_url: str, target_url: str, entities: dict[str, dict[str, Any]]
) -> SyncFlowConfig:
    """A validated config: one SQL source, target and state in one database."""
    return parse_config(
        {
            "version": 1,
            "sources": {"erp": {"kind": "sql", "url": source_url}},
            "target": {"url": target_url},
            "entities": entities,
        },
        source_file="test.yaml",
    )


class Erp:
    """The source database holding the messy tables."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = sa.create_engine(url)
        self.dialect = self.engine.dialect.name

    def close(self) -> None:
        self.engine.dispose()

    def execute(
        self, sql: str, params: list[dict[str, Any]] | dict[str, Any] | None = None
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(sql), params or {})

    def create_products(self, rows: list[Product], table: str = "PRODUCTS") -> None:
        """Create the products table (all text but the row version) and fill it."""
        intt = "BIGINT" if self.dialect == "postgresql" else "INTEGER"
        self.execute(
            f'CREATE TABLE "{table}" ("CODE" VARCHAR(12), "NAME" TEXT, "PRICE" TEXT, '
            f'"QTY" TEXT, "CREATED" TEXT, "ROWVER" {intt})'
        )
        self.insert_products(rows, table)

    def insert_products(self, rows: list[Product], table: str = "PRODUCTS") -> None:
        if rows:
            self.execute(
                f'INSERT INTO "{table}" ("CODE", "NAME", "PRICE", "QTY", "CREATED", "ROWVER") '
                "VALUES (:CODE, :NAME, :PRICE, :QTY, :CREATED, :ROWVER)",
                [p.messy(_variant(p.code)) for p in rows],
            )

    def update_product(self, p: Product, table: str = "PRODUCTS") -> None:
        row = p.messy(_variant(p.code))
        sets = ", ".join(f'"{c}" = :{c}' for c in row if c != "CODE")
        if p.color is not None:
            sets += ', "COLOR" = :COLOR'
            row["COLOR"] = p.color
        self.execute(
            f'UPDATE "{table}" SET {sets} WHERE TRIM("CODE") = :code', {**row, "code": p.code}
        )

    def delete_products(self, codes: list[str], table: str = "PRODUCTS") -> None:
        for c in codes:
            self.execute(f'DELETE FROM "{table}" WHERE TRIM("CODE") = :c', {"c": c})


def products_source(
    urls: tuple[str, str], n: int, *, slices: int = 1, chunk_size: int = 100
) -> tuple[Erp, list[Product], SyncFlowConfig]:
    """``n`` products in the ERP (source URL first), synced as ``products`` in ``slices``
    slices of chunks of ``chunk_size`` into the (empty) target."""
    src_url, tgt_url = urls
    erp = Erp(src_url)
    rows = products(n)
    erp.create_products(rows)
    cfg = make_config(src_url, tgt_url, {"products": entity_config(
        extra={"slices": slices, "chunk_size": chunk_size})})
    return erp, rows, cfg


def sync_all(rt: Runtime, entity: str, run_id: str) -> SyncCounts:
    """Sync every slice of the entity in order; the summed counts."""
    total = SyncCounts()
    for key in slice_keys(rt.entity(entity).slice_count):
        total.add(sync_slice(rt, entity, key, run_id))
    return total


def target_rows(rt: Runtime, table: str) -> dict[str, dict[str, Any]]:
    """Target rows by business key ``code`` (soft-deleted ones included)."""
    rows = rt.target.read_table(table).to_pylist()
    return {r["code"]: r for r in rows}


def expected(products_: list[Product]) -> dict[str, dict[str, Any]]:
    """The clean values by code, as the target should hold them."""
    return {
        p.code: {
            "code": p.code,
            "name": p.name,
            "price": p.price,
            "qty": p.qty,
            "created": p.created,
            "rowver": p.rowver,
        }
        for p in products_
    }


def business_values(row: dict[str, Any]) -> dict[str, Any]:
    """The business columns of a target row, in comparable Python types."""
    out = {k: v for k, v in row.items() if not k.startswith("_bridge_") and k != "COLOR"}
    if isinstance(out.get("created"), datetime):
        out["created"] = out["created"].date()  # a DATE may come back as a timestamp
    out["qty"] = int(out["qty"]) if out.get("qty") is not None else None
    out["rowver"] = int(out["rowver"]) if out.get("rowver") is not None else None
    out["price"] = Decimal(str(out["price"])) if out.get("price") is not None else None
    return out


def live(rows: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Rows not soft-deleted."""
    return {k: r for k, r in rows.items() if r["_bridge_deleted_at"] is None}


def key_hashes_unique(rt: Runtime, table: str) -> bool:
    """True when no key hash is held by two rows."""
    hashes = rt.target.read_table(table).column("_bridge_key_hash").to_pylist()
    return len(hashes) == len(set(hashes))


_versions = itertools.count(50_000)


def bump(p: Product, **changes: Any) -> Product:
    """A changed product with a new row version, higher than any before (a global counter)."""
    return replace(p, rowver=next(_versions), **changes)


def sqlite_urls(tmp: Path) -> tuple[str, str]:
    """(source, target) URLs of two SQLite files."""
    return f"sqlite:///{tmp / 'erp.sqlite'}", f"sqlite:///{tmp / 'target.sqlite'}"

