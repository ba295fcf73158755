"""Many new rows in one statement: PostgreSQL's COPY, `bulk_create` on other databases.

`bulk_create` prepares every value through its field (a few microseconds each) and binds
them in Python; for the recorder's batches that was most of its CPU. COPY sends the rows as
they are and lets the server parse them. Only for plain inserts of new rows: no conflict
handling, no primary keys set on the objects afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from django.db import connections, models, router
from psycopg import sql


def bulk_insert(model: type[models.Model], objects: Sequence[models.Model], *, batch_size: int = 500) -> None:
    """Insert `objects` (new rows of `model`); a constraint they break raises as `bulk_create`'s would."""
    if not objects:
        return
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        model._default_manager.bulk_create(objects, batch_size=batch_size)
        return
    fields = copied_fields(model, objects)
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(model._meta.db_table), sql.SQL(", ").join([sql.Identifier(str(f.column)) for f in fields])
    )
    dumps = [_dumper(field) for field in fields]
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(statement) as copy:
        for obj in objects:
            copy.write_row([dump(getattr(obj, field.attname)) for field, dump in zip(fields, dumps, strict=True)])


def copied_fields(model: type[models.Model], objects: Sequence[models.Model]) -> list[models.Field[Any, Any]]:
    """Every stored column; an auto primary key only when the objects set it (else the sequence does)."""
    pk = model._meta.pk
    auto_pk_unset = isinstance(pk, models.AutoField | models.BigAutoField) and getattr(objects[0], pk.attname) is None
    return [
        f for f in model._meta.concrete_fields if not (auto_pk_unset and f is pk) and not getattr(f, "generated", False)
    ]


def _dumper(field: models.Field[Any, Any]) -> Any:
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        return lambda value: None if value is None else json.dumps(value, cls=encoder)
    return _as_is


def _as_is(value: Any) -> Any:
    return value
