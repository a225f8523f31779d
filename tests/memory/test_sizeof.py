"""sizeof: registry dispatch, numpy, containers with sampling, fallbacks."""

from __future__ import annotations

import sys

import numpy as np
from memkube.memory.sizeof import SAMPLE, SizeofRegistry, sizeof


def test_bytes_like() -> None:
    assert sizeof(b"x" * 1000) >= 1000
    assert sizeof(bytearray(5000)) >= 5000
    assert sizeof(memoryview(bytearray(4096))[:1024]) == 1024


def test_numpy_arrays_count_their_data() -> None:
    a = np.zeros((1000, 100))
    assert sizeof(a) == a.nbytes
    # a broadcast view holds one row only
    b = np.broadcast_to(np.arange(100.0), (1000, 100))
    assert sizeof(b) == 800
    assert sizeof(np.float64(1.0)) >= 8


def test_numpy_object_arrays_count_their_items() -> None:
    a = np.empty(100, dtype=object)
    a[:] = [b"x" * 1000 for _ in range(100)]
    assert sizeof(a) >= 100 * 1000


def test_small_containers_sum_their_items() -> None:
    value = [b"x" * 1000, b"y" * 2000, (b"z" * 3000,)]
    assert sizeof(value) >= 6000
    assert sizeof({"a": b"x" * 5000}) >= 5000
    assert sizeof({b"x" * 4000}) >= 4000


def test_big_containers_are_sampled_and_extrapolated() -> None:
    items = [b"x" * 1000 for _ in range(10 * SAMPLE)]
    estimate = sizeof(items)
    assert 10 * SAMPLE * 1000 <= estimate <= 10 * SAMPLE * 1100 + sys.getsizeof(items)
    mapping = {i: np.zeros(128) for i in range(10 * SAMPLE)}
    assert sizeof(mapping) >= 10 * SAMPLE * 1024


def test_self_referencing_container_terminates() -> None:
    loop: list[object] = []
    loop.append(loop)
    assert sizeof(loop) > 0


def test_registry_uses_the_mro_and_lazy_registration() -> None:
    registry = SizeofRegistry()

    class Base:
        pass

    class Child(Base):
        pass

    @registry.register(Base)
    def _(obj: Base) -> int:
        return 12345

    assert registry(Child()) == 12345
    seen = []

    @registry.register_lazy(__name__.partition(".")[0])
    def _setup() -> None:
        seen.append(True)

        @registry.register(Lazy)
        def _(obj: Lazy) -> int:
            return 777

    class Lazy:
        pass

    Lazy.__module__ = __name__
    assert registry(Lazy()) == 777
    assert seen == [True]


def test_unknown_objects_fall_back_to_getsizeof() -> None:
    class Thing:
        pass

    assert sizeof(Thing()) == sys.getsizeof(Thing())

    class Refuses:
        def __sizeof__(self) -> int:
            raise TypeError("no")

    assert sizeof(Refuses()) == 64
