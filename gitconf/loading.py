"""Loading a large repository in parallel: the edge that starts worker processes, so the pure
format module (`repo_format`) stays free of process pools. Used by apply and the daemon's full
passes from `reconcile.PARALLEL_SERVICES` services on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from .model import DesiredUnit, Problem
from .repo_format import Layout, LoadOptions, ServiceFiles, iter_units
from .schema import ServiceSchema
from .trees import Tree

log = logging.getLogger("gitconf")


def _load_chunk(tree: Tree, settings: dict[str, Any], services: list[ServiceFiles],
                shared: list[str], options: LoadOptions,
                ) -> tuple[list[tuple[DesiredUnit | None, list[Problem]]], dict[str, Any]]:
    """A worker's share: parse and validate some services; valid units travel back without
    their positions (only problems need them), which halves what is pickled."""
    layout = Layout(settings, {s.name: s for s in services}, shared, [])
    compiled: dict[str, ServiceSchema] = {}
    out = list(iter_units(tree, layout, options, schemas_out=compiled))
    for unit, _ in out:
        if unit is not None and unit.valid:
            unit.positions = {}
    return out, {name: s.compiled for name, s in compiled.items()}


def iter_units_parallel(tree: Tree, layout: Layout, options: LoadOptions,
                        compiled_out: dict[str, Any], workers: int = 0, chunk: int = 40,
                        ) -> Iterator[tuple[DesiredUnit | None, list[Problem]]]:
    """`iter_units` spread over worker processes, yielded in order as chunks complete, so the
    caller plans and writes while the workers parse. Workers are spawned, not forked: the
    caller may hold grpc threads, which must not be forked."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    selected = [s for name, s in sorted(layout.services.items())
                if options.services is None or name in options.services]
    chunks = [selected[i:i + chunk] for i in range(0, len(selected), chunk)]
    # leave a core to the process that plans and writes (and to etcd, when it is local)
    workers = workers or max(1, min(4, (os.cpu_count() or 2) - 1))
    done = 0
    try:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_load_chunk, tree, layout.settings, part,
                                   layout.shared_schemas, options) for part in chunks]
            for fut in futures:
                units, compiled = fut.result()
                compiled_out.update(compiled)
                done += 1
                yield from units
    except (BrokenProcessPool, OSError, EOFError) as exc:
        # no worker processes here (a sandbox, an unimportable __main__): same work, in process
        log.warning("parallel loading unavailable (%s); loading in process", exc)
        for part in chunks[done:]:
            units, compiled = _load_chunk(tree, layout.settings, part, layout.shared_schemas,
                                          options)
            compiled_out.update(compiled)
            yield from units
