"""Command-line ``KEY VALUE`` overrides, checked before yacs sees them.

detectron2's parser puts everything after the first ``KEY VALUE`` pair into ``opts``,
so ``... FORGET.MAX_ITER 10 --resume`` does not resume: ``--resume`` becomes a config key
and yacs reports a confusing error about the list or the file. This module says where
flags go instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import ConfigValueError

__all__ = ["check_overrides"]

_FLAG = re.compile(r"^--?[A-Za-z][\w-]*(=.*)?$")


def check_overrides(opts: Sequence[Any]) -> None:
    """Refuse a flag among the ``KEY VALUE`` overrides and an odd-length list.

    Args:
        opts: the overrides as given on the command line.

    Raises:
        ConfigValueError: a ``--flag`` among them (says to put it before the overrides),
            or a key without a value.
    """
    flags = [o for o in opts if isinstance(o, str) and _FLAG.match(o)]
    if flags:
        raise ConfigValueError(
            f"{flags[0]} is among the KEY VALUE overrides, where it is read as a config key; "
            f"put {flags[0]} before the KEY VALUE overrides "
            f"(e.g. --config-file FILE {flags[0]} FORGET.MAX_ITER 100)"
        )
    if len(opts) % 2:
        raise ConfigValueError(
            f"the KEY VALUE overrides must come in pairs; {opts[-1]!r} has no value"
        )
