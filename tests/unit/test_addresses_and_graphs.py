"""Addresses, task specs and graph ordering."""

from __future__ import annotations

import operator

import pytest
from memkube.addresses import parse_address
from memkube.client.graphs import graph_order, to_tasks
from memkube.errors import ConfigError
from memkube.taskspec import execute
from trees import tree_reduction


@pytest.mark.parametrize("text,expected", [
    ("tcp://10.0.0.1:8786", ("tcp", "10.0.0.1", 8786)),
    ("tls://sched.ns.svc:443", ("tls", "sched.ns.svc", 443)),
    ("localhost:1234", ("tcp", "localhost", 1234)),
    ("tcp://[::1]:9", ("tcp", "::1", 9)),
    ("http://h:80", ("tcp", "h", 80)),
])
def test_parse_address(text: str, expected: tuple) -> None:
    addr = parse_address(text)
    assert tuple(addr) == expected
    assert parse_address(str(addr)) == addr


@pytest.mark.parametrize("bad", ["", "tcp://host", "udp://h:1", "tcp://h:99999", "tcp://:1"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_address(bad)


def test_legacy_tuple_graph_executes_with_key_references() -> None:
    graph = {"a": 1, "b": (operator.add, "a", 10), "c": (sum, ["a", "b"]), ("x", 0): "c"}
    tasks = to_tasks(graph)
    assert tasks["b"][1] == {"a"} and tasks["c"][1] == {"a", "b"}
    assert tasks["('x', 0)"][1] == {"c"}
    assert execute(tasks["b"][0], {"a": 1}) == 11
    assert execute(tasks["c"][0], {"a": 1, "b": 11}) == 12
    assert execute(tasks["a"][0], {}) == 1


def tree(n: int) -> dict[str, set[str]]:
    """A binary tree reduction over n leaves: {key: dependencies}."""
    leaves, sums, _ = tree_reduction(n)
    return {**{leaf: set() for leaf in leaves}, **{k: set(p) for k, p in sums.items()}}


def peak_live(deps: dict[str, set[str]], order: dict[str, int]) -> int:
    """Most results held at once when tasks run one at a time in ``order``."""
    dependents: dict[str, set[str]] = {k: set() for k in deps}
    for k, ds in deps.items():
        for d in ds:
            dependents[d].add(k)
    live: set[str] = set()
    done: set[str] = set()
    peak = 0
    for key in sorted(deps, key=order.__getitem__):
        assert deps[key] <= done, f"{key} ordered before its dependencies"
        done.add(key)
        live.add(key)
        peak = max(peak, len(live))
        live = {k for k in live if not dependents[k] <= done or not dependents[k]}
    return peak


def test_depth_first_order_holds_few_intermediates_on_a_tree_reduction() -> None:
    deps = tree(1000)
    depth = peak_live(deps, graph_order(deps))
    breadth = peak_live(deps, graph_order(deps, how="breadth"))
    assert depth <= 12  # about log2(1000) + a few
    assert breadth >= 500
