"""The secret of the claim-id HMAC, from the environment only (never a file in the repo), masked in every text."""

from __future__ import annotations

import os

from config.secrets import remember

KEY_VARIABLE = "VENDORWATCH_REMIT_KEY"
MIN_KEY_LENGTH = 16


class RemitKeyMissing(RuntimeError):
    """The operator's to fix: without the key a resubmission cannot be told from a first pass."""


def remit_key() -> bytes:
    """The key, registered with config.secrets so no log line or stored error can show it. Changing it makes
    every stored claim look new: keep it as long as the database."""
    value = os.environ.get(KEY_VARIABLE, "").strip()
    if len(value) < MIN_KEY_LENGTH:
        raise RemitKeyMissing(f"{KEY_VARIABLE} must be set to a secret of at least {MIN_KEY_LENGTH} characters "
                              "to read 835 remittances (claim ids are kept only as keyed hashes)")
    remember([value])
    return value.encode()
