"""The files of a demo task force: a CA, three agencies with synthetic records, configs.

Everything is written under one folder; servers are started by the caller. The agencies share one
schema; the secret is either written for them or left to the key ceremony.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from linkage.bloom._keys import Secret
from linkage.jobs._profiles import with_default_match_keys
from linkage.records._schema import Schema
from linkage.testing._synthetic import generate_agencies
from linkage.trust._pki import init_ca, issue

AGENCIES = ("police", "child_welfare", "victim_services")
DISCLOSURE = {"police": "full", "child_welfare": "full", "victim_services": "receive-only"}
COLUMNS = ["given_name", "middle_name", "surname", "date_of_birth", "sex", "address", "city", "postcode"]
COORDINATOR = "coordinator"


@dataclass(frozen=True)
class DemoLayout:
    root: Path

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def coordinator(self) -> Path:
        return self.root / "coordinator"

    def agency(self, name: str) -> Path:
        return self.root / name

    def node_config(self, name: str) -> Path:
        return self.agency(name) / "node.toml"

    @property
    def coordinator_config(self) -> Path:
        return self.coordinator / "coordinator.toml"


def prepare_demo(
    root: Path,
    *,
    people: int = 2000,
    seed: int = 2026,
    with_secret: bool = True,
    duplicates: float = 0.0,
    token_cap: int | None = None,
    secret: Secret | None = None,
) -> tuple[DemoLayout, pl.DataFrame]:
    """Write the CA, certificates, agencies' inputs and node configs; returns the layout and the truth.

    ``with_secret``: give every agency the same secret file directly; without it the agencies must
    run the key ceremony (`linkage keys publish|share|receive`) before a job. ``duplicates``: the
    share of each agency's people it holds under several case files; ``token_cap``: the schema's
    frequency cap (default 1); ``secret``: the agencies' secret (default: a fresh one).
    """
    layout = DemoLayout(root)
    if layout.pki.exists():
        shutil.rmtree(layout.pki)
    init_ca(layout.pki)
    for name in (COORDINATOR, *AGENCIES):
        issue(layout.pki, role="coordinator" if name == COORDINATOR else "node", name=name)
    issue(layout.pki, role="auditor", name="auditor")
    rng = np.random.default_rng(seed)
    data = generate_agencies(people, rng=rng, duplicates=duplicates)
    schema = with_default_match_keys(Schema.for_columns(COLUMNS, project="task-force-demo"))
    if token_cap is not None:
        schema = dataclasses.replace(schema, token_cap=token_cap)
    secret = secret or Secret.generate()
    for name in AGENCIES:
        folder = layout.agency(name)
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        frame = data.frames[name]
        # About 2% of each agency's records lack consent to be linked: never encoded, never sent.
        no_consent = np.where(rng.random(frame.height) < 0.02, "yes", "")
        frame.with_columns(no_consent=pl.Series(no_consent)).write_csv(folder / "input.csv")
        (folder / "schema.toml").write_text(schema.to_toml(), encoding="utf-8")
        if with_secret:
            secret.write(folder / "secret.key")
        (folder / "node.toml").write_text(
            f"""# linkage node of {name}
[node]
agency = "{name}"
listen = "127.0.0.1:0"
data_dir = "."
coordinators = ["{COORDINATOR}"]

[data]
input = "input.csv"
id_column = "rec_id"
schema = "schema.toml"
secret = "secret.key"
exclude_column = "no_consent"

[tls]
ca = "../pki/ca.pem"
cert = "../pki/{name}.pem"
key = "../pki/{name}.key"
""",
            encoding="utf-8",
        )
    return layout, data.truth


def write_coordinator_config(
    layout: DemoLayout,
    ports: dict[str, int],
    *,
    listen: str = "127.0.0.1:0",
    duplicates: dict[str, str] | None = None,
    index_keep: str | None = None,
) -> Path:
    """``duplicates``: agency -> its duplicates policy (allow | forbid), where it is not the default;
    ``index_keep``: keep an intake index that long (off when None)."""
    layout.coordinator.mkdir(parents=True, exist_ok=True)
    policies = duplicates or {}
    agencies = "\n".join(
        f'[agencies.{name}]\naddress = "127.0.0.1:{ports[name]}"\ndisclosure = "{DISCLOSURE[name]}"\n'
        + (f'duplicates = "{policies[name]}"\n' if name in policies else "")
        for name in AGENCIES
    )
    layout.coordinator_config.write_text(
        f"""# linkage coordinator of the demo task force
[coordinator]
name = "{COORDINATOR}"
listen = "{listen}"
data_dir = "."
retain_encodings = false

[tls]
ca = "../pki/ca.pem"
cert = "../pki/{COORDINATOR}.pem"
key = "../pki/{COORDINATOR}.key"

[job]
scoring = "auto"
blocking = "auto"

{agencies}"""
        + (f'\n[index]\nkeep = "{index_keep}"\n' if index_keep else ""),
        encoding="utf-8",
    )
    return layout.coordinator_config
