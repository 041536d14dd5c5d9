"""Which failures mean "the database cannot be used now" (server.dbfail): judged
on the exception's class, never on its name or its message."""

from __future__ import annotations

import pytest
from asyncpg import exceptions as pg

from sealdrop.server.dbfail import is_unreachable


@pytest.mark.parametrize("exc", [
    pg.CannotConnectNowError("the database system is starting up"),
    pg.AdminShutdownError("terminating connection due to administrator command"),
    pg.InvalidCatalogNameError('database "x" does not exist'),
    pg.InvalidPasswordError('password authentication failed for user "u"'),
    pg.TooManyConnectionsError("sorry, too many clients already"),
    pg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    pg.ClientConfigurationError("cannot read the root certificate"),
], ids=lambda e: type(e).__name__)
def test_asyncpgs_unreachable_database_errors(exc: BaseException) -> None:
    assert is_unreachable(exc)
    wrapped = RuntimeError("while reading a transfer")
    wrapped.__cause__ = exc
    assert is_unreachable(wrapped)


def test_a_bad_query_is_not_an_unreachable_database() -> None:
    assert not is_unreachable(pg.UniqueViolationError("duplicate key value"))
    assert not is_unreachable(pg.UndefinedTableError('relation "t" does not exist'))


def test_a_class_that_only_shares_asyncpgs_name_is_not_asyncpgs() -> None:
    class CannotConnectNowError(Exception):
        """Not asyncpg's: a name is no evidence of where an error came from."""

    assert not is_unreachable(CannotConnectNowError("the database system is starting up"))
