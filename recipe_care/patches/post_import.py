"""Run a function right after a module is first imported (one meta-path hook for all of recipe_care's patches).

``when_imported(name, fn)`` calls ``fn(module)`` now if ``name`` is already imported, else right after the module's
code has executed on its first import. The hook finds nothing itself: it asks the other finders for the module's
spec and wraps its loader. Patching this way keeps ``import verl`` cheap in every process (no verl submodule is
imported early) and never misses a module imported later.
"""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any, Callable

_CALLBACKS: dict[str, list[Callable[[Any], None]]] = {}


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, inner: Any, callbacks: list[Callable[[Any], None]]):
        self._inner, self._callbacks = inner, callbacks

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        for fn in list(self._callbacks):
            fn(module)

    def __getattr__(self, name):  # get_source, get_filename, … for tracebacks and inspect
        return getattr(self._inner, name)


class _CarePostImportHook(importlib.abc.MetaPathFinder):
    def __init__(self):
        self._busy: set[str] = set()

    def find_spec(self, fullname, path, target=None):
        callbacks = _CALLBACKS.get(fullname)
        if not callbacks or fullname in self._busy:  # re-entrant lookups (other hooks asking the meta path)
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None:
                        spec.loader = _PatchingLoader(spec.loader, callbacks)
                    return spec
            return None
        finally:
            self._busy.discard(fullname)


def when_imported(name: str, fn: Callable[[Any], None]) -> None:
    """Call ``fn(module)`` once ``name`` is imported (now, if it already is). ``fn`` must be idempotent."""
    module = sys.modules.get(name)
    if module is not None:
        fn(module)
        return
    callbacks = _CALLBACKS.setdefault(name, [])
    if fn not in callbacks:
        callbacks.append(fn)
    if not any(type(f).__name__ == "_CarePostImportHook" for f in sys.meta_path):
        sys.meta_path.insert(0, _CarePostImportHook())
