"""Loading a large repository in parallel: the edge that starts worker processes, so the pure
format module (`repo_format`) stays free of process pools. Used by apply, the daemon's full
passes and validate, from `PARALLEL_SERVICES` services on.
"""

from __future__ import annotations

import logging
import os
import signal
from collections import deque
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .model import DesiredUnit, Problem
from .repo_format import Layout, LoadOptions, ServiceFiles, iter_units, selected_services
from .schema import ServiceSchema
from .trees import Tree
from .validation import Findings, check_services

if TYPE_CHECKING:
    from concurrent.futures import Future, ProcessPoolExecutor

PARALLEL_SERVICES = 200  # from this many services, parsing runs in worker processes
CHUNK_KEYS = 4_000  # values a chunk of services carries (40 services of the reference repo)

log = logging.getLogger("gitconf")


def _share(tree: Tree, layout: Layout, services: list[ServiceFiles]) -> Tree:
    """What a worker needs of the tree: a commit restricted to its services' files (read by
    blob id, where `commit:path` would resolve every path through the root tree again:
    superlinear at 10,000 services), plus the shared schemas."""
    restricted = getattr(tree, "restricted", None)
    if restricted is None:
        return tree
    paths = [p for svc in services for p in svc.all_files()] + list(layout.shared_schemas)
    shared: Tree = restricted(paths)
    return shared


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


def _check_chunk(tree: Tree, settings: dict[str, Any], services: list[ServiceFiles],
                 shared: list[str], options: LoadOptions) -> Findings:
    """A worker's share of `validate`: only problems and counts travel back."""
    return check_services(tree, Layout(settings, {s.name: s for s in services}, shared, []))


def check_in_workers(tree: Tree, layout: Layout, workers: int = 0,
                     chunk: int = 40) -> Iterator[Findings]:
    """`validation.check_services` spread over worker processes, one per core (the caller only
    adds up), from `PARALLEL_SERVICES` services on; smaller trees are checked in process."""
    selected = selected_services(layout, None)
    if len(selected) < PARALLEL_SERVICES:
        yield check_services(tree, layout)
        return
    chunks = (selected[i:i + chunk] for i in range(0, len(selected), chunk))
    yield from _run_chunks(_check_chunk, tree, layout, LoadOptions(), chunks,
                           workers or _workers(spare=0))


def _ignore_sigint() -> None:
    """Workers leave Ctrl-C to the parent: it stops them, so a terminal's Ctrl-C (sent to the
    whole process group) prints one message, not one traceback per worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop(pool: ProcessPoolExecutor) -> None:
    """Interrupted (Ctrl-C) or abandoned by the caller: end the workers now instead of letting
    them parse the rest of the repository, reap them, and wait for the pool's manager thread,
    which fails the pending work and closes the pool's queues (releasing their semaphores)
    when it sees the workers gone; that must not race the interpreter's exit. Pending futures
    are not cancelled first: the manager would then fail to fail them (Python 3.11)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    for proc in processes:
        proc.join(timeout=2)
    pool.shutdown(wait=False)
    manager = getattr(pool, "_executor_manager_thread", None)
    if manager is not None:
        manager.join(timeout=3)


def iter_units_parallel(tree: Tree, layout: Layout, options: LoadOptions,
                        compiled_out: dict[str, Any], workers: int = 0, chunk: int = 40,
                        ) -> Iterator[tuple[DesiredUnit | None, list[Problem]]]:
    """`iter_units` spread over worker processes, yielded in order as chunks complete, so the
    caller plans and writes while the workers parse."""
    selected = selected_services(layout, options.services)
    sizer = ChunkSizer(most=chunk)
    # leave a core to the process that plans and writes (and to etcd, when it is local)
    workers = workers or _workers(spare=1)
    for units, compiled in _run_chunks(_load_chunk, tree, layout, options,
                                       sizer.chunks(selected), workers):
        sizer.done(sum(len(u.values) for u, _ in units if u is not None))
        compiled_out.update(compiled)
        yield from units


class ChunkSizer:
    """Services per chunk such that a chunk carries about `CHUNK_KEYS` values, learnt from the
    chunks done: with ten times the keys a file, ten times fewer services a chunk, so what is
    in flight (and the memory of a full pass) follows neither the repository nor its files'
    size. The first chunks, sent before any came back, are small."""

    FIRST = 4

    def __init__(self, most: int = 40):
        self.most = most
        self.services = self.keys = 0
        self._issued: deque[int] = deque()

    def size(self) -> int:
        if not self.services:
            return min(self.FIRST, self.most)
        per_service = max(1.0, self.keys / self.services)
        return max(1, min(self.most, int(CHUNK_KEYS / per_service)))

    def chunks(self, selected: list[ServiceFiles]) -> Iterator[list[ServiceFiles]]:
        i = 0
        while i < len(selected):
            n = self.size()
            self._issued.append(n)
            yield selected[i:i + n]
            i += n

    def done(self, keys: int) -> None:
        """A chunk's result arrived (in order), holding `keys` values."""
        self.services += self._issued.popleft()
        self.keys += keys


def _workers(spare: int) -> int:
    """Worker processes: one per core but `spare`, at least one and at most four."""
    return max(1, min(4, (os.cpu_count() or 2) - spare))


T = TypeVar("T")
Task = Callable[[Tree, dict[str, Any], list[ServiceFiles], list[str], LoadOptions], T]


def _run_chunks(task: Task[T], tree: Tree, layout: Layout, options: LoadOptions,
                chunks: Iterator[list[ServiceFiles]], workers: int) -> Iterator[T]:
    """`task` of each chunk, in order, in worker processes; in this process where workers
    cannot start (a sandbox, an unimportable __main__), from the first chunk not yet given."""
    from concurrent.futures.process import BrokenProcessPool

    pending: deque[list[ServiceFiles]] = deque()  # sent to the workers, not yet given back
    try:
        yield from _in_workers(task, tree, layout, options, chunks, workers, pending)
    except (BrokenProcessPool, OSError, EOFError) as exc:
        log.warning("parallel loading unavailable (%s); loading in process", exc)
        for part in (*pending, *chunks):
            yield task(tree, layout.settings, part, layout.shared_schemas, options)


def _in_workers(task: Task[T], tree: Tree, layout: Layout, options: LoadOptions,
                chunks: Iterator[list[ServiceFiles]], workers: int,
                pending: deque[list[ServiceFiles]]) -> Iterator[T]:
    """The chunks' results in order. However this generator ends (done, Ctrl-C while waiting,
    closed by a caller that was interrupted), no worker process outlives it. Workers are
    spawned, not forked: the caller may hold grpc threads, which must not be forked."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(
        "spawn"), initializer=_ignore_sigint)
    futures: deque[Future[Any]] = deque()
    finished = False
    window = 2 * workers + 1  # chunks in flight: results wait for the caller, memory is bounded
    try:
        for part in chunks:
            pending.append(part)
            futures.append(pool.submit(task, _share(tree, layout, part), layout.settings,
                                       part, layout.shared_schemas, options))
            if len(futures) >= window:
                result = futures.popleft().result()
                pending.popleft()
                yield result
        while futures:
            result = futures.popleft().result()
            pending.popleft()
            yield result
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            _stop(pool)
