"""Resolving the optional hooks a store type names in ``connectors.catalog``.

A ``StoreSpec`` names such a hook as ``"package.module:function"``: the catalog is loaded
with the configuration (in every flow run and CLI command) and must import no driver, no
boto3 and no connector implementation, so a hook's module is imported only when the hook
is about to run. ``load_hook`` does that, with a clear error for a reference that does
not resolve (a wrong line in the catalog, caught by the catalog's tests).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def load_hook(ref: str) -> Callable[..., object]:
    """The function ``ref`` (``"package.module:function"``) names, its module imported now.

    ValueError for a malformed reference, ImportError / AttributeError when it names
    nothing, TypeError when it names something that is not callable.
    """
    module_name, sep, attribute = ref.partition(":")
    if not sep or not module_name or not attribute.isidentifier():
        raise ValueError(f"hook reference '{ref}' is not 'package.module:function'")
    hook: object = getattr(importlib.import_module(module_name), attribute)
    if not callable(hook):
        raise TypeError(f"hook reference '{ref}' names a {type(hook).__name__}, not a function")
    return hook
