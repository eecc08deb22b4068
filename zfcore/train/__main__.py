"""``python -m zfcore.train`` and ``torchrun ... -m zfcore.train`` (:mod:`zfcore.train.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
