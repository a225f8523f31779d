"""The pool's token Secret: the one credential scheduler, workers and clients present.

The token is an argument, so the builder stays pure; the operator generates it once and
never rotates it behind running workers' backs.
"""

from __future__ import annotations

import base64

from .. import naming
from ..spec import PoolSpec
from .common import METRICS_TOKEN_KEY, TOKEN_KEY, Manifest, metadata


def build_token_secret(pool: PoolSpec, token: str, metrics_token: str | None = None) -> Manifest:
    """An Opaque Secret ``<pool>-token`` with the key ``token`` and, given a metrics token
    (one for every pool, so that one Prometheus monitor reads them all), ``metrics-token``."""
    data = {TOKEN_KEY: _b64(token)}
    if metrics_token:
        data[METRICS_TOKEN_KEY] = _b64(metrics_token)
    return Manifest(
        apiVersion="v1",
        kind="Secret",
        metadata=metadata(pool, "token", name=naming.secret_name(pool.name)),
        type="Opaque",
        data=data,
    )


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()
