"""The one base of every error zfcore raises (ground floor: imports nothing of ours).

Every exception class of the package derives from :class:`ZFCoreError` and keeps the built-in
base its callers already catch (``class TrainError(ZFCoreError, ValueError)``), so
``except zfcore.ZFCoreError`` catches anything the package raised on purpose, and
``except ValueError`` keeps working. Private control-flow signals (``models._StopForward``,
``deconv._Stop``: they end a forward pass early and never leave the package) are not errors and
do not derive from it.
"""

from __future__ import annotations

__all__ = ["ZFCoreError"]


class ZFCoreError(Exception):
    """Base class of the errors raised by zfcore (bad input, missing data or weights, a failed
    notebook, ...). Each message names the problem and the fix."""
