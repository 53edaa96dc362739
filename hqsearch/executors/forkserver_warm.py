"""Imported last by the fork server (as a preload): fill the caches each forked process would fill alike.

HGQ's layers read their constructor's arguments from the caller's frame
(`hgq.utils.misc.gather_vars_to_kwargs`), and the first such read in a process maps every imported module to
its file (`inspect.getmodule`, a `realpath` per module): about 0.4 s of CPU in each process that builds or
loads a model, half of a preflight's. Made here once, after the imports, the map is every child's.
"""

from __future__ import annotations

import inspect

inspect.getmodule(inspect.currentframe())
