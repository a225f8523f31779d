"""The pool's token Secret: the one credential scheduler, workers and clients present.

The token is an argument, so the builder stays pure; the operator generates it once and
never rotates it behind running workers' backs.
"""

from __future__ import annotations

import base64

from .. import naming
from ..spec import PoolSpec
from .common import TOKEN_KEY, Manifest, metadata


def build_token_secret(pool: PoolSpec, token: str) -> Manifest:
    """An Opaque Secret ``<pool>-token`` with the key ``token``."""
    encoded = base64.b64encode(token.encode()).decode()
    return Manifest(
        apiVersion="v1",
        kind="Secret",
        metadata=metadata(pool, "token", name=naming.secret_name(pool.name)),
        type="Opaque",
        data={TOKEN_KEY: encoded},
    )
