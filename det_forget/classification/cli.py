"""Shared command-line plumbing of the classification tools (detectron2-style).

``--config-file`` names a yaml file (``_BASE_`` inheritance works as in detectron2) and
trailing ``KEY VALUE`` pairs override single keys, e.g.
``FORGET.METHOD no_retain CLS.SOLVER.BASE_LR 0.01``.
"""

from __future__ import annotations

import argparse
import logging
import os

import torch
from fvcore.common.config import CfgNode as CN

from ..config import check_ignored_keys, check_values
from ..config.overrides import check_overrides
from ..errors import ConfigValueError
from ..forgetting.methods import check_method, task_type_of
from .config import get_classification_cfg

__all__ = ["build_argument_parser", "setup_cfg", "setup_logging"]


def build_argument_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with ``--config-file`` and trailing ``opts``.

    Args:
        description: the tool's one-line description.

    Returns:
        The parser; tools may add their own flags.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config-file", default="", metavar="FILE", help="path to a yaml config")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of user errors too"
    )
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="config overrides as KEY VALUE pairs, e.g. FORGET.MAX_ITER 200",
    )
    return parser


def setup_cfg(config_file: str = "", opts: list[str] | None = None, freeze: bool = True) -> CN:
    """The default classification config, merged with a yaml file and overrides.

    Args:
        config_file: yaml path ('' for defaults only).
        opts: ``[KEY, VALUE, ...]`` overrides.
        freeze: freeze the config.

    Returns:
        The config.

    Raises:
        FileNotFoundError: ``config_file`` does not exist.
        ValueError: the config sets a key its task type ignores (see
            :func:`det_forget.config.check_ignored_keys`).
    """
    cfg = get_classification_cfg()
    if config_file:
        if not os.path.isfile(config_file):
            raise FileNotFoundError(f"config file {config_file} does not exist")
        cfg.merge_from_file(config_file)
    if opts:
        check_overrides(opts)
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, ValueError, AssertionError) as e:  # unknown key, wrong type
            reason = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise ConfigValueError(f"bad KEY VALUE override: {reason}") from e
    check_ignored_keys(cfg)
    check_values(cfg)
    check_method(cfg.FORGET.METHOD, task_type_of(cfg))  # before any data is read
    if cfg.CLS.NUM_THREADS > 0:
        torch.set_num_threads(cfg.CLS.NUM_THREADS)
    if freeze:
        cfg.freeze()
    return cfg


def setup_logging(output_dir: str | None = None, name: str = "det_forget") -> logging.Logger:
    """detectron2's logger setup for ``det_forget`` (console, and ``log.txt`` in output_dir).

    Args:
        output_dir: folder for ``log.txt`` (None: console only).
        name: logger name.

    Returns:
        The configured logger.
    """
    from detectron2.utils.logger import setup_logger

    if output_dir:
        os.makedirs(output_dir, exist_ok=True)
    return setup_logger(output=output_dir, name=name, abbrev_name="df")
