"""Reads and updates whose SQL is compiled once per process, for the paths every chat message takes.

Building and compiling a queryset with joins and subquery annotations costs milliseconds of
Python (measured: about 4 ms for an Active Conversations List row whose SQL then runs in 0.2 ms
on SQLite). The rows the agent's desktop re-reads for every message (its list row, the new
timeline entry) are read through a ``PreparedQuery``: the queryset is built and compiled once,
with sample values, and later calls run the same SQL with their own values through Django's own
row mapping (model instances, ``select_related`` objects, annotations; ``prefetch_related`` runs
as usual afterwards). A ``PreparedUpdate`` does the same for ``queryset.update(...)``. A locking read
(``select_for_update``) is refused outside a transaction on every call, as Django refuses it.

Only values that reach the SQL as parameters may vary; a value that changes the shape of the
query (a different lookup, an empty list) cannot be prepared. Each value names how it is turned
into a database parameter (a model field, or ``int``/``str``), and the first compile checks that
every sample value is found where it is expected, so a query that cannot be prepared fails at once.
"""

from __future__ import annotations

import copy
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction
from django.db.models import Field, QuerySet
from django.db.models.sql import UpdateQuery
from django.db.transaction import TransactionManagementError


class _Prepared(ABC):
    """What prepared reads and updates share: SQL compiled once per database, with the values' slots found."""

    def __init__(self, build: Callable[..., Any], **values: tuple[Any, Any]) -> None:
        """``build(**values)`` returns the query; ``values`` maps each name to (sample, field or type).

        Samples must be distinctive: no other parameter of the query may equal one.
        """
        self.build = build
        self.samples = {name: sample for name, (sample, _prep) in values.items()}
        self.preps = {name: prep for name, (_sample, prep) in values.items()}
        self._compiled: dict[str, tuple[Any, Any, str, list, dict[int, str]]] = {}
        self._lock = threading.Lock()

    def _db_value(self, name: str, value: Any, connection) -> Any:
        prep = self.preps[name]
        if isinstance(prep, Field):
            return prep.get_db_prep_value(prep.get_prep_value(value), connection, prepared=True)
        return prep(value)

    @abstractmethod
    def _compiler(self, alias: str) -> tuple[Any, Any]:
        """(the template the samples built, its compiler for ``alias``)."""

    def _compile(self, alias: str):
        compiled = self._compiled.get(alias)
        if compiled is not None:
            return compiled
        with self._lock:
            if alias not in self._compiled:
                connection = connections[alias]
                template, compiler = self._compiler(alias)
                sql, params = compiler.as_sql()
                wanted = {name: self._db_value(name, sample, connection) for name, sample in self.samples.items()}
                slots = {}
                for index, param in enumerate(params):
                    names = [name for name, value in wanted.items() if param == value]
                    if len(names) > 1:
                        raise ValueError(f"sample values of {names} are equal; make them distinct")
                    if names:
                        slots[index] = names[0]
                missing = set(wanted) - set(slots.values())
                if missing:
                    raise ValueError(f"{sorted(missing)} not found among the query's parameters")
                self._compiled[alias] = (template, compiler, sql, list(params), slots)
        return self._compiled[alias]

    def _params(self, params: list, slots: dict[int, str], values: dict[str, Any], connection) -> tuple:
        run_params = list(params)
        for index, name in slots.items():
            run_params[index] = self._db_value(name, values[name], connection)
        return tuple(run_params)


class PreparedQuery(_Prepared):
    def __init__(self, build: Callable[..., QuerySet], **values: tuple[Any, Any]) -> None:
        super().__init__(build, **values)
        # Per thread and database: (the connection, the row converters its backend gives this query's columns).
        self._converters = threading.local()

    def _compiler(self, alias: str):
        queryset = self.build(**self.samples)
        return queryset, queryset.query.get_compiler(using=alias)

    def _converters_for(self, compiler, using: str, connection):
        """``get_converters`` for the prepared compiler: worked out once per connection, not on every call.

        The converters depend only on the selected columns and the connection's backend; Django asks for them
        on every run, and for a joined row that was a sixth of the Python time of the read.
        """
        cached = getattr(self._converters, using, None)
        if cached is None or cached[0] is not connection:
            own = copy.copy(compiler)
            own.connection = connection
            cache: dict[int, dict] = {}
            cached = (connection, own, cache)
            setattr(self._converters, using, cached)
        _connection, own, cache = cached

        def get_converters(expressions):
            key = len(expressions)
            if key not in cache:
                cache[key] = own.get_converters(expressions)
            return cache[key]

        return get_converters

    def __call__(self, *, using: str = "default", **values: Any) -> list:
        """The rows for ``values``, as ``list(build(**values))`` would give them."""
        return self._rows(using, self._statement(using, values))

    def _statement(self, using: str, values: dict[str, Any]) -> tuple[str, tuple]:
        """The SQL and parameters for ``values``, checked as Django checks them before running."""
        template, _compiler, sql, params, slots = self._compile(using)
        # Connections belong to a thread: the one compiling may not be the one running.
        connection = connections[using]
        if template.query.select_for_update and connection.get_autocommit():
            # Django's own check, which runs while compiling and so only on the first call.
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        return sql, self._params(params, slots, values, connection)

    def _rows(self, using: str, statement: tuple[str, tuple], fetched: list | None = None) -> list:
        """Run ``statement`` (or map the raw rows ``fetched`` for it) through Django's row mapping."""
        template, compiler, _sql, _params, _slots = self._compile(using)
        connection = connections[using]
        prepared = copy.copy(compiler)
        prepared.connection = connection
        prepared.as_sql = lambda *args, **kwargs: statement
        if fetched is not None:
            # What execute_sql would return for these rows: one chunk (trimmed as it trims them).
            width = compiler.col_count if compiler.has_extra_select else None
            chunk = [row[:width] for row in fetched] if width is not None else fetched
            prepared.execute_sql = lambda *args, **kwargs: [chunk]
        prepared.get_converters = self._converters_for(compiler, using, connection)
        # A queryset as QuerySet._clone makes one, over a shallow copy of the template's query instead of a
        # clone (which deep-copies select_related's tree on every call); nothing reads the query but for its
        # compiler. ModelIterable asks the query for its compiler, and this one holds the compiled select
        # and the row mapping. The queryset never leaves this function: chained further, it would ignore
        # the change.
        query = copy.copy(template.query)
        query.get_compiler = lambda *args, **kwargs: prepared
        queryset = template.__class__(model=template.model, query=query, using=template._db, hints=template._hints)
        queryset._prefetch_related_lookups = template._prefetch_related_lookups[:]
        queryset._known_related_objects = template._known_related_objects
        queryset._iterable_class = template._iterable_class
        queryset._fields = template._fields
        return list(queryset)


class PreparedUpdate(_Prepared):
    """An ``UPDATE`` compiled once per database: ``build(**values)`` returns ``(queryset, changes)``, and a
    call does what ``queryset.update(**changes)`` does, returning the number of rows matched.

    For the writes every chat message makes (the session's activity stamp, the customer's waiting timer),
    whose compiling cost more than running them.
    """

    def _compiler(self, alias: str):
        queryset, changes = self.build(**self.samples)
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values(changes)
        query.annotations = {}
        if query.related_updates:
            raise ValueError("an update of a parent model's fields cannot be prepared")
        return queryset, query.get_compiler(using=alias)

    def __call__(self, *, using: str = "default", **values: Any) -> int:
        _template, _compiler, sql, params, slots = self._compile(using)
        connection = connections[using]
        with transaction.mark_for_rollback_on_error(using=using), connection.cursor() as cursor:
            cursor.execute(sql, self._params(params, slots, values, connection))
            return cursor.rowcount


def run_together(*calls: tuple[PreparedQuery, dict[str, Any]], using: str = "default") -> list[list]:
    """Several prepared reads in one round trip to the database; each call's rows, as calling it would give them.

    On PostgreSQL the statements go out together in psycopg's pipeline mode and the server answers them in
    order, so reads that do not depend on each other cost one wait for the database instead of one each.
    With the database on another host, as in production, each wait is a network round trip; on loopback
    it is about 0.1 ms, which the pipeline's own work about cancels (docs/PERFORMANCE.md, 2026-12-04).
    Elsewhere (SQLite, a libpq without pipelines) they run one after the other.
    """
    connection = connections[using]
    statements = [query._statement(using, values) for query, values in calls]
    if len(calls) < 2 or connection.vendor != "postgresql" or not _pipeline_supported():
        return [query._rows(using, statement) for (query, _values), statement in zip(calls, statements, strict=True)]
    with connection.cursor() as first:
        cursors = [first, *(connection.cursor() for _ in calls[1:])]
        try:
            with connection.wrap_database_errors:
                # Sent as they are executed; the block's end sends the sync and waits once for every answer.
                # (A fetch inside the block would wait for its own answer first: one more round trip.)
                with connection.connection.pipeline():
                    for cursor, (sql, params) in zip(cursors, statements, strict=True):
                        cursor.execute(sql, params)
                fetched = [cursor.fetchall() for cursor in cursors]
        finally:
            for cursor in cursors[1:]:
                cursor.close()
    return [
        query._rows(using, statement, rows)
        for (query, _values), statement, rows in zip(calls, statements, fetched, strict=True)
    ]


def _pipeline_supported() -> bool:
    import psycopg

    return psycopg.Pipeline.is_supported()
