"""The house's layers: each core module imports no grpc, protocol, services or CLI; each subpackage
has a small, sorted public surface."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

import linkage

CORE_PACKAGES = ("records", "bloom", "matching", "scoped", "jobs", "trust", "attacks", "testing")
FORBIDDEN = ("grpc", "grpc_health", "linkage.protocol", "linkage.cli", "services")


def _modules(package: str) -> list[str]:
    module = importlib.import_module(f"linkage.{package}")
    return [module.__name__] + [m.name for m in pkgutil.walk_packages(module.__path__, prefix=f"{module.__name__}.")]


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_core_modules_do_not_import_the_wire_the_processes_or_the_cli(package):
    # A fresh interpreter per package: what one import pulls in is all that is loaded.
    names = _modules(package)
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}: importlib.import_module(name)\n"
        f"print(sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"linkage.{package} loads {out.strip()}"


@pytest.mark.parametrize("package", (*CORE_PACKAGES, "protocol"))
def test_each_package_surface_is_sorted_and_complete(package):
    module = importlib.import_module(f"linkage.{package}")
    names = getattr(module, "__all__", [])
    assert names == sorted(names)
    for name in names:
        assert hasattr(module, name), name


def test_the_top_level_holds_only_the_shared_base():
    top = sorted(m.name for m in pkgutil.iter_modules(linkage.__path__) if not m.ispkg)
    assert top == ["_extras", "_files", "cli", "errors"]  # _extras: the optional dependencies, one line each when missing
