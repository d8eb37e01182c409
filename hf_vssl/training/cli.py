"""What every recipe's ``main`` shares: logging, argument parsing, and one-line user errors."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import datasets
import transformers
from accelerate import PartialState
from accelerate.state import AcceleratorState

from hf_vssl.training.arguments import parse_args
from hf_vssl.training.checkpointing import OutputDirInUseError, release_all_output_locks
from hf_vssl.training.loop import NonFiniteLossError

T = TypeVar("T")

#: Errors caused by the user's input or environment: shown as one line unless debugging.
USER_ERRORS = (ValueError, OSError, OutputDirInUseError, NonFiniteLossError)
DEBUG_ENV = "HF_VSSL_DEBUG"


def is_main_process() -> bool:
    """Whether this is process 0, from the environment ``accelerate launch``/``torchrun`` set (no
    process group needed yet)."""
    return int(os.environ.get("RANK", "0")) == 0


def configure_logging(main_process: bool | None = None) -> None:
    """Info logs of hf_vssl on the main process; on the other ranks only errors, so a warning
    appears once, not once per process (Python warnings are silenced there too)."""
    main_process = is_main_process() if main_process is None else main_process
    level = logging.INFO if main_process else logging.ERROR
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("hf_vssl").setLevel(level)
    transformers.utils.logging.set_verbosity(logging.WARNING if main_process else logging.ERROR)
    datasets.utils.logging.set_verbosity(logging.WARNING if main_process else logging.ERROR)
    if not main_process:
        warnings.simplefilter("ignore")


def debug_requested(argv: list[str]) -> bool:
    """``--debug`` (``--debug true``, ``--debug=true``) on the command line, or ``HF_VSSL_DEBUG=1``."""
    if os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes"):
        return True
    for i, item in enumerate(argv):
        if item == "--debug":
            following = argv[i + 1].lower() if i + 1 < len(argv) else ""
            return following not in ("false", "0", "no")
        if item.startswith("--debug="):
            return item.split("=", 1)[1].lower() in ("true", "1", "yes")
    return False


def run_recipe(run: Callable[[T], Any], arguments_type: type[T], argv: list[str] | None = None) -> Any:
    """Configure logging, parse ``argv`` into ``arguments_type``, call ``run`` on it.

    From the command line (``argv=None``) a user error (bad flag value, missing file, busy output
    folder, NaN loss, ...) prints one line ``error: ...`` and exits with status 1; ``--debug`` or
    ``HF_VSSL_DEBUG=1`` shows the traceback instead. Called from Python (``argv`` a list), errors
    propagate. Other exceptions (bugs) always keep their traceback.
    """
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    try:
        return run(parse_args(arguments_type, argv))
    except USER_ERRORS as error:
        if not from_command_line or debug_requested(argv):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"error: {message} (--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        release_all_output_locks()
        PartialState().destroy_process_group()
        # A next run in this process (tests, notebooks) may choose another precision.
        AcceleratorState._reset_state(reset_partial_state=True)
