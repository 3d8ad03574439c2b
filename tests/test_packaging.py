"""A regular (non-editable) install has every file a command reads at run time.

`selfhood cluster up` hands pom.xml to Maven and log4j2.xml to the brokers'
JVM, and `selfhood replica conform` (and `run --system`) validates answers
against replica-api.yaml. They once lived in the checkout (compose/, docs/),
so only an editable install found them. This test asks the plain
``pip install .`` of the project (the session's `bare_python` venv, shared
with test_extras.py), in a fresh interpreter and through the same functions
the commands use, where each file is: it must be inside the installed
package, readable, and the checkout's file byte for byte.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "selfhood"

#: run by the installed copy: where `cluster up` and `replica conform` find their files
PROBE = """
import json
import selfhood
from selfhood.chaos.cluster.brokers import kafka_libs_dir, kafka_version
from selfhood.chaos.cluster.common import data_file
from selfhood.replica.conform import DEFAULT_DOC
print(json.dumps({
    "package": selfhood.__file__,
    "pom": str(data_file("pom.xml")),
    "log4j2": str(data_file("log4j2.xml")),
    "kafka_version": kafka_version(),
    "libs": str(kafka_libs_dir()),
    "openapi": str(DEFAULT_DOC),
}))
"""


def test_an_installed_selfhood_finds_its_run_time_files(bare_python: Path,
                                                        tmp_path: Path) -> None:
    # cwd outside the checkout, so nothing can be found relative to it
    probe = subprocess.run([str(bare_python), "-c", PROBE], cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr[-3000:]
    got = json.loads(probe.stdout)
    pkg = Path(got["package"]).parent
    assert "site-packages" in pkg.parts and not pkg.is_relative_to(PACKAGE.parent), pkg
    for key, rel in (("pom", "chaos/cluster/data/pom.xml"),
                     ("log4j2", "chaos/cluster/data/log4j2.xml"),
                     ("openapi", "replica/replica-api.yaml")):
        path = Path(got[key])
        assert path == pkg / rel, (key, path)
        # the installed file is a copy of the checkout's one home
        assert path.read_bytes() == (PACKAGE / rel).read_bytes(), key
    # the same pom, so the same pinned version and the same jar cache as the checkout
    from selfhood.chaos.cluster.brokers import kafka_libs_dir, kafka_version

    assert got["kafka_version"] == kafka_version()
    assert got["libs"] == str(kafka_libs_dir())


def test_every_data_file_is_installed(bare_python: Path) -> None:
    """A file added to a data directory without a package-data glob is caught here."""
    site = subprocess.run([str(bare_python), "-c", "import selfhood; print(selfhood.__file__)"],
                          capture_output=True, text=True, timeout=60, check=True)
    installed = Path(site.stdout.strip()).parent
    for rel in ("chaos/cluster/data",):
        want = sorted(p.name for p in (PACKAGE / rel).iterdir() if p.is_file())
        have = sorted(p.name for p in (installed / rel).iterdir())
        assert want and have == want, (rel, have, want)
