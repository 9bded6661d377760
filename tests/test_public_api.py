import linkage
import linkage.errors


def test_all_is_sorted_and_complete():
    assert linkage.__all__ == sorted(linkage.__all__)
    for name in linkage.__all__:
        assert hasattr(linkage, name), name
    public = {n for n in vars(linkage) if not n.startswith("_") and not isinstance(getattr(linkage, n), type(linkage))}
    assert public - {"__version__"} <= set(linkage.__all__) | {"annotations"}


def test_every_error_is_a_linkage_error_with_a_grpc_status():
    for name in linkage.errors.__all__:
        cls = getattr(linkage.errors, name)
        assert issubclass(cls, linkage.LinkageError)
        assert cls.grpc_status.isupper()


def test_core_does_not_import_grpc_or_the_cli():
    import subprocess
    import sys

    code = "import sys, linkage, linkage.bloom; print(any(m.startswith(('grpc', 'linkage.cli')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
