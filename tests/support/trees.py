"""A binary tree reduction, the graph shape the ordering tests measure."""

from __future__ import annotations


def tree_reduction(n: int) -> tuple[list[str], dict[str, list[str]], str]:
    """Leaves of an ``n``-leaf pairwise reduction, each sum's inputs, and the root key."""
    leaves = [f"leaf-{i}" for i in range(n)]
    sums: dict[str, list[str]] = {}
    level, depth = leaves, 0
    while len(level) > 1:
        depth += 1
        nxt = []
        for j in range(0, len(level), 2):
            key = f"sum-{depth}-{j // 2}"
            sums[key] = level[j:j + 2]
            nxt.append(key)
        level = nxt
    return leaves, sums, level[0]
