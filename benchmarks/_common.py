"""Shared by the benchmark scripts: the machine line every script ends with."""

from __future__ import annotations

import os
import platform
import resource


def machine_line() -> str:
    import numba
    import numpy
    import polars

    return (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, numpy {numpy.__version__},"
        f" polars {polars.__version__}, numba {numba.__version__}"
    )


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
