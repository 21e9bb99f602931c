"""The ``assay`` command (and ``python -m assay``)."""

from __future__ import annotations

import gc


def main() -> None:
    # Loading the CLI allocates hundreds of thousands of long-lived objects and frees few:
    # pause the collector while they load, then freeze them out of every later pass.
    gc.disable()
    try:
        from assay.cli import main as cli_main
    finally:
        gc.freeze()
        gc.enable()
    cli_main()


if __name__ == "__main__":
    main()
