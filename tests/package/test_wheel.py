"""The built package, checked from the outside: sdist and wheel, then a fresh install.

``python -m build`` makes the sdist and, from it, the wheel (so the sdist is complete
enough to build from); ``twine check --strict`` checks both.  The wheel is installed with
its dependencies (but not trio) into a fresh virtual environment, and everything below
runs there, from a directory outside the checkout: ``python -m pywsk --help``, the
installed metadata, the ``ImportError`` that names the ``trio`` extra, and the DEBUG
records of a pywsk.aio connect and disconnect against a loopback peer.

Marked ``package`` (``pytest -m package`` selects it, ``-m "not package"`` skips it): it
needs the package index for the build backend and the dependencies (pip's cache makes
repeated runs quick).
"""

from __future__ import annotations

import email.parser
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import venv
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pytest

import pywsk

ROOT = Path(__file__).resolve().parents[2]
VERSION = pywsk.__version__

pytestmark = [pytest.mark.package, pytest.mark.timeout(600)]

#: Classifiers issue 16 asks for (the licence is the License-Expression field instead).
REQUIRED_CLASSIFIERS = {
    "Development Status :: 3 - Alpha",
    "Intended Audience :: Developers",
    "Operating System :: POSIX :: Linux",
    "Programming Language :: Python :: 3",
    "Programming Language :: Python :: 3.11",
    "Programming Language :: Python :: 3.12",
    "Programming Language :: Python :: 3.13",
    "Framework :: AsyncIO",
    "Framework :: Trio",
    "Framework :: AnyIO",
    "Topic :: System :: Networking",
    "Typing :: Typed",
}


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command; its stdout, or a failure that shows what it printed."""
    proc = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    python: Path  # the fresh environment's interpreter
    env: dict[str, str]  # its environment: no PYTHONPATH, nothing of the checkout
    home: Path  # a directory outside the checkout to run in


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", dist, ROOT, cwd=ROOT)
    (sdist,) = dist.glob("pywsk-*.tar.gz")
    (wheel,) = dist.glob("pywsk-*.whl")
    run(sys.executable, "-m", "twine", "check", "--strict", sdist, wheel, cwd=dist)

    target = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False, clear=True).create(target)
    python = target / "bin" / "python"
    # This environment's pip installs into the fresh one: no pip bootstrap needed there.
    run(sys.executable, "-m", "pip", "--python", python, "install", "-q", wheel, cwd=dist)
    home = tmp_path_factory.mktemp("home")
    env = {
        "PATH": f"{target / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }
    return Built(sdist, wheel, python, env, home)


def installed(built: Built, code: str) -> str:
    """Run ``code`` with the fresh environment's interpreter, outside the checkout."""
    return run(built.python, "-c", textwrap.dedent(code), cwd=built.home, env=built.env)


def metadata(built: Built) -> Message:
    with zipfile.ZipFile(built.wheel) as wheel:
        text = wheel.read(f"pywsk-{VERSION}.dist-info/METADATA").decode()
    return email.parser.Parser().parsestr(text)


# --- the files ---------------------------------------------------------------------------------


def test_the_wheel_is_pure_python_and_typed(built: Built) -> None:
    assert built.wheel.name == f"pywsk-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(built.wheel) as wheel:
        names = set(wheel.namelist())
    assert "pywsk/py.typed" in names
    assert "pywsk/__main__.py" in names
    # The C drivers' headers and runtime sources (pywsk driver build compiles them).
    assert {
        "pywsk/cdriver/include/wsk.h",
        "pywsk/cdriver/runtime.c",
        "pywsk/cdriver/bridge.h",
    } <= names
    assert f"pywsk-{VERSION}.dist-info/licenses/LICENSE" in names
    packages = {n.split("/")[1] for n in names if n.startswith("pywsk/") and n.count("/") > 1}
    assert packages >= {"nt", "wsk", "core", "provider", "aio", "verifier", "cli", "testing"}
    # Only the package: no tests, benchmarks or documentation sources.
    assert not {n for n in names if not n.startswith(("pywsk/", f"pywsk-{VERSION}.dist-info/"))}


def test_the_sdist_carries_the_checkout(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    for needed in (
        "LICENSE",
        "CHANGELOG.md",
        "README.md",
        "pyproject.toml",
        "src/pywsk/py.typed",
        "tests/conftest.py",
        "tests/package/test_wheel.py",
        "docs/conf.py",
        "docs/_ext/wsk_links.py",
        "docs/layers.md",
        "examples/echosrv.py",
        "benchmarks/cnet.c",
        "examples/c/echosrv.c",
        "tests/cdriver/misuse.c",
        "scripts/run",
    ):
        assert needed in names, needed
    assert not any("__pycache__" in n or n.startswith("docs/_build") for n in names)


# --- the metadata --------------------------------------------------------------------------------


def test_the_metadata(built: Built) -> None:
    meta = metadata(built)
    assert meta["Name"] == "pywsk"
    assert meta["Version"] == VERSION
    assert meta["License-Expression"] == "MIT"
    assert meta["Author"]
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["Description-Content-Type"] == "text/markdown"
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) == {"Repository", "Documentation", "Changelog", "Issues"}
    assert all(u.startswith("https://") for u in urls.values())
    classifiers = set(meta.get_all("Classifier") or [])
    assert classifiers >= REQUIRED_CLASSIFIERS
    # Extras a wheel can honour, and nothing else.
    assert set(meta.get_all("Provides-Extra") or []) == {"trio", "anyio", "c"}


def test_the_classifiers_are_known_to_the_index(built: Built) -> None:
    from trove_classifiers import classifiers as known

    unknown = set(metadata(built).get_all("Classifier") or []) - known
    assert not unknown


def test_the_installed_metadata(built: Built) -> None:
    out = installed(
        built,
        """
        import json
        from importlib import metadata
        import pywsk
        meta = metadata.metadata("pywsk")
        print(json.dumps({
            "version": metadata.version("pywsk"),
            "attribute": pywsk.__version__,
            "license": meta["License-Expression"],
            "file": pywsk.__file__,
            "licence_text": (metadata.distribution("pywsk").read_text("licenses/LICENSE") or "")[:11],
        }))
        """,
    )
    facts = json.loads(out)
    assert facts["version"] == facts["attribute"] == VERSION
    assert facts["license"] == "MIT"
    assert facts["licence_text"] == "MIT License"
    # The installed copy, not the checkout.
    assert "site-packages" in facts["file"]
    assert not facts["file"].startswith(str(ROOT / "src"))


# --- the command, the extras, the log ------------------------------------------------------------


def test_python_m_pywsk_help(built: Built) -> None:
    out = run(built.python, "-m", "pywsk", "--help", cwd=built.home, env=built.env)
    assert "Usage: pywsk" in out
    for command in ("demo", "probe", "serve", "--verbose"):
        assert command in out
    version = run(built.python, "-m", "pywsk", "--version", cwd=built.home, env=built.env)
    assert VERSION in version


def test_pywsk_trio_without_trio_names_the_extra(built: Built) -> None:
    out = installed(
        built,
        """
        try:
            import trio
        except ImportError:
            pass
        else:
            raise SystemExit("trio is installed in the fresh environment")
        try:
            import pywsk.trio
        except ImportError as exc:
            print(exc)
        else:
            raise SystemExit("import pywsk.trio worked without trio")
        """,
    )
    assert "pywsk[trio]" in out


def test_a_debug_record_of_an_aio_connect_and_disconnect(built: Built) -> None:
    out = installed(
        built,
        """
        import json, logging, socket, threading
        import pywsk.aio

        records = []

        class Keep(logging.Handler):
            def emit(self, record):
                records.append({
                    "logger": record.name,
                    "level": record.levelname,
                    "message": record.getMessage(),
                    "operation": record.wsk_operation,
                    "socket": record.wsk_socket,
                    "status": record.ntstatus,
                })

        logging.getLogger("pywsk").addHandler(Keep())
        logging.getLogger("pywsk").setLevel(logging.DEBUG)

        server = socket.create_server(("127.0.0.1", 0))
        server.settimeout(30)

        def peer():
            conn, _ = server.accept()
            conn.settimeout(30)
            while conn.recv(100):
                pass
            conn.close()  # our FIN answered with its own

        threading.Thread(target=peer, daemon=True).start()

        async def main():
            conn = await pywsk.aio.connect("127.0.0.1", server.getsockname()[1])
            await conn.send_all(b"hello")
            await conn.disconnect()
            while await conn.receive_some():
                pass
            await conn.aclose()

        pywsk.aio.run(main())
        print(json.dumps(records))
        """,
    )
    records = json.loads(out)
    by_operation = {r["operation"]: r for r in records}
    connect = by_operation["WskConnect"]
    disconnect = by_operation["WskDisconnect"]
    assert connect["logger"] == disconnect["logger"] == "pywsk.aio._connection"
    assert connect["level"] == disconnect["level"] == "DEBUG"
    assert connect["status"] == disconnect["status"] == 0  # STATUS_SUCCESS
    assert connect["socket"] == disconnect["socket"] is not None
    assert "STATUS_SUCCESS" in disconnect["message"]
    assert "our FIN acknowledged" in disconnect["message"]
    assert disconnect["socket"] in disconnect["message"]
    assert by_operation["WskCloseSocket"]["socket"] == connect["socket"]
