"""syncflow.yaml validation: errors name file, entity and field; unknown keys are errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncflow_core.config import check_source_columns, load_config, parse_config
from syncflow_core.errors import ConfigError


def _doc(**entity_overrides: Any) -> dict[str, Any]:
    orders: dict[str, Any] = {
        "source": {"connection": "erp", "table": "SALES_ORDERS"},
        "business_key_fields": ["order_no"],
        "delta_strategy": "hash",
    }
    orders.update(entity_overrides)
    return {
        "sources": {"erp": {"kind": "sql", "url_env": "ERP_URL"}},
        "target": {"url": "sqlite:///target.sqlite"},
        "entities": {
            "customers": {
                "source": {"table": "CUSTOMERS"},
                "business_key_fields": ["customer_no"],
            },
            "orders": orders,
        },
    }


def _error(doc: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        parse_config(doc)
    return str(exc.value)


def test_valid_config_defaults() -> None:
    cfg = parse_config(_doc())
    orders = cfg.entity("orders")
    assert orders.schedule.window_start.hour == 19 and orders.schedule.window_end.hour == 7
    assert orders.schedule.days_to_complete == 7
    assert orders.slice_count == 7
    assert orders.table_name == "orders"
    assert cfg.state_store == cfg.target


def test_unknown_key_is_an_error_naming_entity_and_field() -> None:
    msg = _error(_doc(bussiness_key="x"))
    assert msg == "syncflow.yaml: entity 'orders': bussiness_key: unknown key"


def test_rowversion_strategy_needs_a_field() -> None:
    msg = _error(_doc(delta_strategy="rowversion"))
    assert "entity 'orders'" in msg and "rowversion_field" in msg


def test_bad_strategy_and_bad_name() -> None:
    assert "delta_strategy" in _error(_doc(delta_strategy="magic"))
    msg = _error(_doc(business_key_fields=["order\x00no"]))
    assert "entity 'orders': business_key_fields" in msg and "control character" in msg
    msg = _error(_doc(business_key_fields=["x" * 64]))
    assert "entity 'orders': business_key_fields" in msg and "longer than 63 bytes" in msg
    msg = _error(_doc(target_table="orders "))
    assert "entity 'orders': target_table" in msg and "leading or trailing spaces" in msg


def test_parent_ref_must_match_parent_key() -> None:
    doc = _doc(parent_refs=[{"entity": "customers", "fields": {"cust": "customer_nr"}}])
    msg = _error(doc)
    assert "entity 'orders': parent_refs.0.fields" in msg and "customer_no" in msg
    doc = _doc(parent_refs=[{"entity": "nobody", "fields": {"x": "y"}}])
    assert "no entity 'nobody'" in _error(doc)


def test_parent_cycle_is_refused() -> None:
    doc = _doc(parent_refs=[{"entity": "customers", "fields": {"customer_no": "customer_no"}}])
    doc["entities"]["customers"]["parent_refs"] = [
        {"entity": "orders", "fields": {"order_no": "order_no"}}
    ]
    assert "cycle" in _error(doc)


def test_parent_cycle_with_an_optional_reference_is_allowed() -> None:
    doc = _doc(parent_refs=[{"entity": "customers", "fields": {"customer_no": "customer_no"}}])
    doc["entities"]["customers"]["parent_refs"] = [
        {"entity": "orders", "fields": {"last_order_no": "order_no"}, "optional": True}
    ]
    cfg = parse_config(doc)
    # The optional reference is no upstream asset: the asset graph stays acyclic.
    assert cfg.parents_of("customers") == () and cfg.parents_of("orders") == ("customers",)
    # Without 'optional' the cycle is refused, and the message says how to break it.
    doc["entities"]["customers"]["parent_refs"][0]["optional"] = False
    msg = _error(doc)
    assert "entity 'customers': parent_refs: cycle customers -> orders -> customers" in msg
    assert "optional: true" in msg


def test_reference_declared_as_another_type_than_the_parent_key_is_refused() -> None:
    doc = _doc(
        parent_refs=[{"entity": "customers", "fields": {"cust": "customer_no"}}],
        fields={"CUST": {"type": "NUMBER"}},
        field_mappings=[{"op": "rename", "field": "CUST", "to": "cust"}],
    )
    doc["entities"]["customers"]["fields"] = {"customer_no": {"type": "INTEGER"}}
    msg = _error(doc)
    assert msg.startswith("syncflow.yaml: entity 'orders': parent_refs.0.fields: field 'cust'")
    assert "'NUMBER'" in msg and "'INTEGER'" in msg and "'customers'" in msg
    # Alike (NUMBER(10) is an integer, like INTEGER): accepted.
    doc["entities"]["orders"]["fields"] = {"CUST": {"type": "NUMBER(10)"}}
    assert parse_config(doc).entity("orders").parent_refs[0].fields == {"cust": "customer_no"}


def test_self_reference_is_allowed() -> None:
    doc = _doc()
    doc["entities"]["employees"] = {
        "source": {"table": "EMPLOYEES"},
        "business_key_fields": ["emp_no"],
        "parent_refs": [
            {"entity": "employees", "fields": {"manager_no": "emp_no"}, "required": False}
        ],
    }
    cfg = parse_config(doc)
    assert cfg.parents_of("employees") == ()


def test_password_in_url_is_refused_and_env_name_checked() -> None:
    doc = _doc()
    doc["target"] = {"url": "postgresql://bob:secret@db/x"}
    assert "password" in _error(doc)
    doc["target"] = {"url_env": "lower-case"}
    assert "environment variable name" in _error(doc)


def test_schedule_validation() -> None:
    msg = _error(_doc(schedule={"timezone": "Mars/Olympus"}))
    assert "entity 'orders': schedule.timezone" in msg
    msg = _error(_doc(schedule={"window_start": "01:00", "window_end": "01:00"}))
    assert "empty" in msg


def test_load_config_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(_doc(extra_field=1)))
    with pytest.raises(ConfigError, match=r"^mine\.yaml: entity 'orders': extra_field"):
        load_config(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "missing.yaml")
    path.write_text("entities: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_check_source_columns_names_the_missing_column() -> None:
    cfg = parse_config(_doc(business_key_fields=["order_no"]))
    with pytest.raises(ConfigError) as exc:
        check_source_columns(cfg, cfg.entity("orders"), ["ORDER_ID", "TOTAL"])
    assert str(exc.value) == (
        "syncflow.yaml: entity 'orders': business_key_fields: field 'order_no' "
        "is not a source column"
    )
    check_source_columns(cfg, cfg.entity("orders"), ["order_no", "TOTAL"])


def test_locale_implies_decimal_separator() -> None:
    cfg = parse_config(_doc(fields={"TOTAL": {"locale": "de_DE"}, "QTY": {"locale": "en_US"}}))
    orders = cfg.entity("orders")
    assert orders.field_options("TOTAL").effective_decimal_separator() == ","
    assert orders.field_options("QTY").effective_decimal_separator() == "."
    assert orders.field_options("OTHER").empty_is_null is True


def test_source_column_check_knows_source_names_from_output_names() -> None:
    cfg = parse_config(
        _doc(
            business_key_fields=["order_no"],
            rowversion_field="rowver",
            delta_strategy="rowversion",
            field_mappings=[
                {"op": "rename", "field": "ORDER_NO", "to": "order_no"},
                {"op": "rename", "field": "ROWVER", "to": "rowver"},
            ],
            fields={"ORDER_NO": {"type": "VARCHAR2(12)"}},
        )
    )
    orders = cfg.entity("orders")
    # Keys and the rowversion field are output names: a rename makes them.
    check_source_columns(cfg, orders, ["ORDER_NO", "ROWVER"])
    # `fields:` options are keyed by source columns: an output name there is refused.
    bad = cfg.model_copy(
        update={
            "entities": {
                **cfg.entities,
                "orders": orders.model_copy(
                    update={"fields": {"order_no": orders.fields["ORDER_NO"]}}
                ),
            }
        }
    )
    with pytest.raises(ConfigError, match="fields: field 'order_no' is not a source column"):
        check_source_columns(bad, bad.entity("orders"), ["ORDER_NO", "ROWVER"])


def test_two_entities_writing_one_table_are_refused() -> None:
    msg = _error(_doc(target_table="customers"))
    assert msg.startswith("syncflow.yaml: entity 'orders': target_table: 'customers'")
    assert "also the target table of entity 'customers'" in msg


def test_table_names_equal_up_to_case_are_one_table() -> None:
    msg = _error(_doc(target_table="Customers"))
    assert "entity 'orders': target_table: 'Customers'" in msg and "up to case" in msg


def test_state_table_names_are_reserved() -> None:
    msg = _error(_doc(target_table="sf_watermarks"))
    assert "entity 'orders': target_table" in msg and "reserved for SyncFlow" in msg
    doc = _doc()
    doc["entities"]["sf_failed_records"] = doc["entities"].pop("customers")
    assert "entity 'sf_failed_records': target_table" in _error(doc)


def test_names_with_spaces_are_accepted_as_written() -> None:
    cfg = parse_config(_doc(
        source={"connection": "erp", "table": "dbo.Order Details"},
        target_table="Order Details",
        business_key_fields=["Order ID", "Product ID"],
        fields={"Unit Price": {"type": "NUMBER(12,2)"}},
    ))
    orders = cfg.entity("orders")
    assert orders.table_name == "Order Details"
    assert orders.business_key_fields == ("Order ID", "Product ID")


@pytest.mark.parametrize(
    ("fmt", "why"),
    [
        ("%d.%m.%Q", "unknown directive %Q"),
        ("%d/%m/%Y %k", "unknown directive %k"),
        ("%Y %j", "unknown directive %j"),  # Arrow's strptime ignores the day of year
        ("dd.mm.yyyy", "has no % directive"),
        ("%Y-%m-%d %H:%M:%S.%f %z", "%f must be the last directive"),
    ],
)
def test_unknown_date_format_tokens_are_refused(fmt: str, why: str) -> None:
    msg = _error(_doc(fields={"ORDER_DATE": {"date_formats": [fmt]}}))
    assert "entity 'orders': fields.ORDER_DATE.date_formats" in msg and why in msg


def test_unknown_locales_are_refused() -> None:
    msg = _error(_doc(fields={"AMOUNT": {"locale": "xx_YY"}}))
    assert "entity 'orders': fields.AMOUNT.locale" in msg and "unknown locale 'xx_YY'" in msg
    for ok in ("de_DE", "en-US", "fr", "pt_BR"):
        parse_config(_doc(fields={"AMOUNT": {"locale": ok}}))
