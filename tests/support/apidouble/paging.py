"""Continue tokens of paginated lists: where the last page ended, and at which resourceVersion.

Opaque to clients (base64 JSON). Pages follow the store's (namespace, name) order; a later
page shows objects as they are now, not a snapshot at the first page's resourceVersion.
"""

from __future__ import annotations

import base64
import json

from .errors import bad_request


def encode_continue(after: tuple[str, str], rv: int) -> str:
    raw = json.dumps({"start": list(after), "rv": rv}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def decode_continue(token: str) -> tuple[tuple[str, str], int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        namespace, name = data["start"]
        return (str(namespace), str(name)), int(data["rv"])
    except (ValueError, KeyError, TypeError) as exc:
        raise bad_request(f"continue key is not valid: {exc}") from exc
