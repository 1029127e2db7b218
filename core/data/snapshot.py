"""One look at the data files per batch of work: `data_snapshot()`.

Why: every scoring call checks that the data did not change since its results were cached --
it walks the dataset's folders (core.data.layouts) and stats every image (core.scoring.data.
fingerprint). That is right for one call, but a page that reads ten epochs' cached scores
made sixty such checks of the same files: a 10-epoch Overview spent more time stat-ing
2,000 files than reading its scores. Inside `with data_snapshot():` each check is made once
and its answer reused until the block ends -- the same assumption a single evaluation makes
(the files do not change while it runs), stated for a whole batch. Outside a block nothing is
remembered. The scope is per thread (a ContextVar), so dashboard sessions never share one.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

T = TypeVar("T")

_ACTIVE: ContextVar[dict[Hashable, Any] | None] = ContextVar("data_snapshot", default=None)


@contextmanager
def data_snapshot() -> Iterator[None]:
    """Within the block, folder walks and file fingerprints are made once per folder / file
    list. Nested blocks share the outermost one."""
    token = _ACTIVE.set({}) if _ACTIVE.get() is None else None
    try:
        yield
    finally:
        if token is not None:
            _ACTIVE.reset(token)


def remembered(key: Hashable, compute: Callable[[], T]) -> T:
    """compute() -- once per key inside a data_snapshot block, every time outside one."""
    memo = _ACTIVE.get()
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]
