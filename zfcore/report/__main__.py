"""``python -m zfcore.report check`` (or ``readme``): the README generator and its check, the same
command as the installed ``zfcore-report`` (:func:`zfcore.paper.readme.main`).

:mod:`zfcore.report` writes a notebook's outputs and sits on the engine's floor; the README is
generated a floor up, in the paper (:mod:`zfcore.paper.readme`). This entry point is its own
module on the top floor, so running it imports the paper while importing ``zfcore.report`` never
does.
"""

import sys

from zfcore.paper.readme import main

if __name__ == "__main__":
    sys.exit(main())
