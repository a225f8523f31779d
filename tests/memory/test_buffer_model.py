"""SpillBuffer against a plain dict model: any sequence of operations, same answers."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule
from memkube.memory.buffer import SpillBuffer
from memkube.memory.disk import SpillDisk

KEYS = st.sampled_from([f"k{i}" for i in range(6)])
VALUES = st.binary(min_size=0, max_size=400)


class BufferMatchesADict(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, Any] = {}
        self.buffer = SpillBuffer(
            SpillDisk(self.blobs, max_bytes=1500, compression="auto"),
            target=600,
            weight=len,
            full_retry=0.0,
        )
        self.model: dict[str, bytes] = {}

    @rule(key=KEYS, value=VALUES)
    def set(self, key: str, value: bytes) -> None:
        self.buffer[key] = value
        self.model[key] = value

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        if key in self.model:
            assert self.buffer[key] == self.model[key]
        else:
            assert key not in self.buffer

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        if key in self.model:
            del self.buffer[key]
            del self.model[key]

    @rule()
    def evict(self) -> None:
        before = self.buffer.managed
        freed = self.buffer.evict()
        assert self.buffer.managed == before - freed

    @invariant()
    def same_keys_and_bounded_memory(self) -> None:
        assert sorted(self.buffer) == sorted(self.model)
        in_memory = [k for k in self.model if self.buffer.in_memory(k)]
        assert self.buffer.managed == sum(len(self.model[k]) for k in in_memory)
        # under target unless the store is full (then values stay in memory, by design)
        assert self.buffer.managed <= 600 or self.buffer.spill_full
        assert self.buffer.spilled <= 1500
        assert len(self.blobs) == len(self.buffer.slow)


TestBufferMatchesADict = BufferMatchesADict.TestCase
TestBufferMatchesADict.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
