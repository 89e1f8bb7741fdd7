"""Types of services keyed through type aliases: `make lint` checks this file with mypy
for Python 3.11 and for 3.13 (the 3.12 block is read only for the newer target).

It is never run; tests/container/test_python_versions.py runs the same keys.
"""

from __future__ import annotations

import sys
from typing import Annotated, assert_type

from typing_extensions import TypeAliasType

from di import Injector, Named


class Database:
    pass


DB = TypeAliasType("DB", Database)
Primary = TypeAliasType("Primary", Annotated[Database, Named("primary")])


class Orders:
    def __init__(self, db: DB, primary: Primary) -> None:
        assert_type(db, Database)
        assert_type(primary, Database)


def check_types(injector: Injector) -> None:
    # An alias asks for what it stands for, as the container reads it.
    assert_type(injector.invoke(DB), Database)
    assert_type(injector.invoke(DB, name="primary"), Database)
    injector.provide_value(Database(), provides=DB)


if sys.version_info >= (3, 12):
    from typing import TypeAliasType as StatementAlias

    # What `type Replica = Database` makes, in a form a 3.11 parser reads too.
    Replica = StatementAlias("Replica", Database)

    def check_statement_alias(injector: Injector) -> None:
        assert_type(injector.invoke(Replica), Database)
