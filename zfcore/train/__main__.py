"""``python -m zfcore.train`` and ``torchrun ... -m zfcore.train``: :func:`zfcore.train.cli.main`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
