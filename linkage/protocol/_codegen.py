"""Generate linkage/protocol/v1 from proto/linkage/v1 (run by `make proto`).

protoc writes imports from the .proto path (``from linkage.v1 import ...``); the generated modules
live in ``linkage.protocol.v1``, so the imports are rewritten to the package-qualified name.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "linkage" / "protocol" / "v1"


def generated_sources() -> dict[str, str]:
    """File name -> contents of the generated modules, fresh from the .proto files."""
    from grpc_tools import protoc

    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "linkage" / "v1").glob("*.proto"))
    with tempfile.TemporaryDirectory() as temp:
        code = protoc.main(
            ["protoc", f"-I{PROTO_ROOT}", f"--python_out={temp}", f"--pyi_out={temp}", f"--grpc_python_out={temp}", *protos]
        )
        if code != 0:
            raise SystemExit(f"protoc failed with status {code}")
        out = {}
        for path in sorted((Path(temp) / "linkage" / "v1").iterdir()):
            text = path.read_text()
            out[path.name] = re.sub(r"^from linkage\.v1 import", "from linkage.protocol.v1 import", text, flags=re.M)
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, text in generated_sources().items():
        (OUT / name).write_text(text)
    (OUT / "__init__.py").write_text('"""Generated from proto/linkage/v1 by `make proto`; do not edit."""\n')
    print(f"generated {', '.join(sorted(generated_sources()))} in {OUT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
