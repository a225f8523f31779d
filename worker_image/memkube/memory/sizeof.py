"""Estimating the bytes a value holds in memory ("managed" memory).

A registry maps types to size functions, found along the type's MRO, so a subclass uses its
base's function. numpy and pandas are registered lazily, on the first value of theirs seen,
so importing memkube does not import them. Containers are sized from a sample of their
items when big, to keep sizeof cheap on a list of a million objects. Anything unknown falls
back to ``sys.getsizeof``. Not covered: process-level measurement (RSS, cgroup usage).

Register your own::

    @sizeof.register(MyType)
    def _(obj: MyType) -> int:
        return obj.nbytes
"""

from __future__ import annotations

import importlib
import logging
import random
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
SizeFunc = Callable[[Any], int]

# Containers longer than this are sized from a sample of this many items.
SAMPLE = 16
# Guard against deeply nested or self-referencing containers.
MAX_DEPTH = 8


class SizeofRegistry:
    """Callable ``sizeof(obj) -> int`` with per-type functions and lazy registrations."""

    def __init__(self) -> None:
        self._funcs: dict[type, SizeFunc] = {}
        self._lazy: dict[str, Callable[[], None]] = {}
        self._cache: dict[type, SizeFunc] = {}
        self._lock = threading.RLock()  # lazy setups call register()

    def register(self, cls: type) -> Callable[[Callable[[T], int]], Callable[[T], int]]:
        """Decorator registering a size function for ``cls`` and its subclasses."""

        def decorator(func: Callable[[T], int]) -> Callable[[T], int]:
            with self._lock:
                self._funcs[cls] = func
                self._cache.clear()
            return func

        return decorator

    def register_lazy(self, module: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
        """Decorator: run the registration when a value from top-level ``module`` is seen."""

        def decorator(func: Callable[[], None]) -> Callable[[], None]:
            self._lazy[module] = func
            return func

        return decorator

    def dispatch(self, cls: type) -> SizeFunc:
        func = self._cache.get(cls)
        if func is not None:
            return func
        with self._lock:
            top = cls.__module__.partition(".")[0]
            setup = self._lazy.pop(top, None)
            if setup is not None:
                setup()
            for base in cls.__mro__:
                found = self._funcs.get(base)
                if found is not None:
                    self._cache[cls] = found
                    return found
            self._cache[cls] = _getsizeof
            return _getsizeof

    def __call__(self, obj: Any) -> int:
        try:
            return int(self.dispatch(type(obj))(obj))
        except RecursionError:
            return _getsizeof(obj)


def _getsizeof(obj: Any) -> int:
    try:
        return sys.getsizeof(obj)
    except TypeError:  # some extension types refuse __sizeof__
        return 64


sizeof = SizeofRegistry()
_depth = threading.local()


def _sized_items(items: list[Any] | tuple[Any, ...], count: int) -> int:
    """Sum of item sizes, extrapolated from a sample when there are many."""
    level = getattr(_depth, "level", 0)
    if level >= MAX_DEPTH or count == 0:
        return 0
    _depth.level = level + 1
    try:
        if count <= SAMPLE:
            return sum(sizeof(x) for x in items)
        sample = random.sample(items, SAMPLE) if isinstance(items, list) else items[:SAMPLE]
        return sum(sizeof(x) for x in sample) * count // SAMPLE
    finally:
        _depth.level = level


@sizeof.register(bytes)
@sizeof.register(bytearray)
def _sizeof_bytes(obj: bytes | bytearray) -> int:
    return sys.getsizeof(obj)


@sizeof.register(memoryview)
def _sizeof_memoryview(obj: memoryview) -> int:
    return obj.nbytes


@sizeof.register(list)
@sizeof.register(tuple)
def _sizeof_sequence(obj: list[Any] | tuple[Any, ...]) -> int:
    return sys.getsizeof(obj) + _sized_items(obj, len(obj))


@sizeof.register(set)
@sizeof.register(frozenset)
def _sizeof_set(obj: set[Any] | frozenset[Any]) -> int:
    items = list(obj) if len(obj) <= SAMPLE else [x for _, x in zip(range(SAMPLE), obj)]
    return sys.getsizeof(obj) + _sized_items(items, len(items)) * len(obj) // max(1, len(items))


@sizeof.register(dict)
def _sizeof_dict(obj: dict[Any, Any]) -> int:
    if len(obj) <= SAMPLE:
        pairs = list(obj.items())
    else:
        pairs = [p for _, p in zip(range(SAMPLE), obj.items())]
    # keys and values separately: each sample is at most SAMPLE long, so not resampled
    sampled = _sized_items([k for k, _ in pairs], len(pairs))
    sampled += _sized_items([v for _, v in pairs], len(pairs))
    return sys.getsizeof(obj) + sampled * len(obj) // max(1, len(pairs))


@sizeof.register_lazy("numpy")
def _register_numpy() -> None:
    np = importlib.import_module("numpy")

    @sizeof.register(np.ndarray)
    def _sizeof_ndarray(x: Any) -> int:
        if x.dtype.hasobject:
            flat = x.ravel()
            items = [flat[i] for i in range(min(len(flat), SAMPLE))]
            extra = _sized_items(items, len(items)) * int(x.size) // max(1, len(items))
            return int(x.nbytes) + extra
        if 0 in x.strides:
            # a broadcast view holds only the memory of its non-repeated axes
            held = x.itemsize
            for n, stride in zip(x.shape, x.strides):
                if stride != 0:
                    held *= n
            return int(held)
        return int(x.nbytes)

    @sizeof.register(np.generic)
    def _sizeof_scalar(x: Any) -> int:
        return int(x.nbytes) + 16


@sizeof.register_lazy("pandas")
def _register_pandas() -> None:
    pd = importlib.import_module("pandas")

    def _object_extra(values: Any) -> int:
        if getattr(values, "dtype", None) is None or values.dtype != object or len(values) == 0:
            return 0
        sample = [values[i] for i in range(min(len(values), SAMPLE))]
        return _sized_items(sample, len(sample)) * len(values) // len(sample)

    @sizeof.register(pd.DataFrame)
    def _sizeof_frame(df: Any) -> int:
        total = int(df.memory_usage(index=True, deep=False).sum())
        for name in df.columns:
            total += _object_extra(df[name].to_numpy())
        return total + 100

    @sizeof.register(pd.Series)
    def _sizeof_series(s: Any) -> int:
        return int(s.memory_usage(index=True, deep=False)) + _object_extra(s.to_numpy()) + 100

    @sizeof.register(pd.Index)
    def _sizeof_index(idx: Any) -> int:
        return int(idx.memory_usage(deep=False)) + int(_object_extra(idx.to_numpy())) + 100
