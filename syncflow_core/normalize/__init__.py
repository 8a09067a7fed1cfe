"""The five normalization layers, run in order by `normalize`.

1. `coerce_types`   (stage ``type_coercion``) declared source types -> Arrow types
2. `clean_strings`  (stage ``strings``)       trim, NFC, controls, mojibake, '' -> null
3. `parse_numbers`  (stage ``numbers``)       numbers from text, both locales
4. `parse_datetimes` (stage ``datetimes``)    datetimes from text, everything to UTC
5. `apply_mappings` (stage ``field_mapping``) declarative rename/cast/default/... steps

Each layer removes the rows it rejects, so a row is rejected once, by the first layer that
finds it bad. The hidden `syncflow_core.rejects.ROW_ID` column survives all layers.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from syncflow_core.batch import StageResult
from syncflow_core.config import EntityConfig
from syncflow_core.normalize.coercion import coerce_types
from syncflow_core.normalize.datetimes import parse_datetimes, rr_year
from syncflow_core.normalize.mapping import apply_mappings
from syncflow_core.normalize.numbers import parse_numbers
from syncflow_core.normalize.plan import (
    FieldPlan,
    Kind,
    mark_unconstrained,
    parse_declared_type,
    plan_fields,
)
from syncflow_core.normalize.strings import clean_strings
from syncflow_core.normalize.utf8 import reject_invalid_utf8
from syncflow_core.rejects import concat_reject_specs, with_row_ids

__all__ = [
    "FieldPlan",
    "Kind",
    "apply_mappings",
    "clean_strings",
    "coerce_types",
    "normalize",
    "parse_datetimes",
    "parse_declared_type",
    "parse_numbers",
    "plan_fields",
    "rr_year",
]


def normalize(
    table: pa.Table,
    entity: EntityConfig,
    source_types: Mapping[str, str] | None = None,
    *,
    reference_year: int | None = None,
) -> StageResult:
    """Run layers 1-5 on a raw extract; returns the cleaned table and all reject specs.

    ``source_types`` maps source column -> declared type text as reflected from the source
    (``NUMBER(12,2)``, ``VARCHAR2(40)``, ``TIMESTAMP WITH TIME ZONE``, ...);
    ``entity.field_options(col).type`` overrides it. ``reference_year`` anchors Oracle's RR
    two-digit-year rule (default: the current year). The output keeps `ROW_ID`.
    """
    table = with_row_ids(table).combine_chunks()
    plans = plan_fields(table.schema, entity, source_types)
    r = reject_invalid_utf8(table)  # before any kernel that would fail on the whole chunk
    rejects = [r.rejects]
    r = coerce_types(r.table, entity, plans=plans)
    rejects.append(r.rejects)
    r = clean_strings(r.table, entity, plans=plans)
    rejects.append(r.rejects)
    r = parse_numbers(r.table, entity, plans=plans)
    rejects.append(r.rejects)
    r = parse_datetimes(r.table, entity, plans=plans, reference_year=reference_year)
    rejects.append(r.rejects)
    r = apply_mappings(r.table, entity)
    rejects.append(r.rejects)
    return StageResult(mark_unconstrained(r.table, plans, entity), concat_reject_specs(rejects))
