"""Tests that build models with random encoders on purpose, without the warning each build logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def random_weight_warnings_off() -> Iterator[None]:
    """No log records of WARNING or below while the block runs (the "random weights" notices of
    tiny test models); logging is back as it was afterwards, also when the block raises."""
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
