"""Pure logic, no I/O (the unit tier)."""

from tests.leakcheck import _no_leaked_tasks  # noqa: F401 - autouse: no test leaks asyncio tasks
