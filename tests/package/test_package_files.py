"""The package's own files, checked from the checkout (fast; tests/package/test_wheel.py
checks the built artefacts): one version, a licence that matches its declaration, a Keep a
Changelog changelog, a README whose links work on a package index, extras that mean
something from a wheel, ``python -m pywsk``, and the names the reference links to
Microsoft's pages."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

import pywsk

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT: dict[str, Any] = PYPROJECT["project"]


def test_the_version_is_in_one_place() -> None:
    assert "version" in PROJECT["dynamic"]
    assert "version" not in PROJECT
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "pywsk.__version__"}
    literal = re.compile(rf"['\"]{re.escape(pywsk.__version__)}['\"]")
    holders = [
        path.relative_to(ROOT)
        for path in (ROOT / "src").rglob("*.py")
        if literal.search(path.read_text(encoding="utf-8"))
    ]
    assert holders == [Path("src/pywsk/__init__.py")]


def test_the_licence_file_matches_the_declaration() -> None:
    assert PROJECT["license"] == "MIT"
    assert PROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n\nCopyright (c) ")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text
    # PEP 639: the expression replaces the licence classifier (setuptools refuses both).
    assert not [c for c in PROJECT["classifiers"] if c.startswith("License ::")]


def test_the_changelog_keeps_a_changelog() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    assert text.startswith("# Changelog\n")
    assert "https://keepachangelog.com/" in text
    versions = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", text, re.MULTILINE)
    assert versions[0] == ("Unreleased", "")
    assert versions[1][0] == pywsk.__version__
    assert versions[1][1], "the release has its date"
    for version, _date in versions:  # every heading has its link
        assert re.search(rf"^\[{re.escape(version)}\]: https://", text, re.MULTILINE)
    sections = set(re.findall(r"^### (\w+)$", text, re.MULTILINE))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


def test_the_readme_links_are_absolute_and_share_the_repository_address() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    repository = PROJECT["urls"]["Repository"]
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links, "the README links to the documentation"
    assert all(link.startswith("https://") for link in links), links
    own = [link for link in links if "github.com" in link]
    assert own
    assert all(link.startswith(repository + "/") for link in own), own
    # Each link into the repository names a file that exists.
    for link in own:
        path = re.sub(r"^/(?:blob|tree)/main/", "", link.removeprefix(repository)).split("#")[0]
        if path and not path.startswith(("issues", "releases")):
            assert (ROOT / path).exists(), link


def test_the_readme_keeps_the_set_up_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "bash scripts/run demo" in text
    assert "bash scripts/run test" in text


def test_extras_are_what_a_wheel_can_honour() -> None:
    assert set(PROJECT["optional-dependencies"]) == {"trio", "anyio", "c"}
    groups = PYPROJECT["dependency-groups"]
    assert {"test", "docs", "bench"} <= set(groups)
    # Nothing of the checkout is in the wheel, so what only the checkout uses is a group.
    assert PYPROJECT["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"]
    assert not (ROOT / "src" / "benchmarks").exists()


def test_python_m_pywsk_is_the_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pywsk", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"pywsk, version {pywsk.__version__}"


# --- the reference's links to Microsoft's pages ---------------------------------------------------


@pytest.fixture(scope="module")
def pages() -> dict[str, str]:
    pytest.importorskip("sphinx", reason="the docs dependency group is not installed")
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import wsk_links
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    found: dict[str, str] = wsk_links.microsoft_pages()
    return found


def test_every_dispatch_function_and_its_type_links_to_microsoft(pages: dict[str, str]) -> None:
    import pywsk.wsk
    from pywsk.wsk import dispatch

    for name in dispatch.__all__:
        if name.startswith("PFN_WSK_"):
            assert pages[name].endswith(f"/ddi/wsk/nc-wsk-{name.lower()}"), name
    for table in (dispatch.WSK_PROVIDER_CONNECTION_DISPATCH, dispatch.WSK_PROVIDER_DISPATCH):
        for member in table.__annotations__:
            if member.startswith("Wsk"):
                assert "/ddi/wsk/nc-wsk-pfn_wsk_" in pages[member], member
    assert pages["WskDisconnect"] == (
        "https://learn.microsoft.com/windows-hardware/drivers/ddi/wsk/nc-wsk-pfn_wsk_disconnect"
    )
    assert pages["WskRelease"].endswith("nc-wsk-pfn_wsk_release_data_indication_list")
    assert pages["WskRegister"].endswith("/ddi/wsk/nf-wsk-wskregister")
    for name in dir(pywsk.wsk):
        if name.startswith("WSK_") and name.endswith(("_DISPATCH", "_NPI")):
            assert pages[name].endswith(f"/ddi/wsk/ns-wsk-_{name.lower()}"), name


def test_every_wdm_routine_pywsk_provides_links_to_microsoft(pages: dict[str, str]) -> None:
    import pywsk.nt

    routines = [n for n in dir(pywsk.nt) if re.match(r"(Io|Ke|Ex|Mm)[A-Z]", n)]
    routines = [n for n in routines if callable(getattr(pywsk.nt, n))]
    assert "IoAllocateIrp" in routines
    for name in routines:
        assert pages[name].endswith(f"/ddi/wdm/nf-wdm-{name.lower()}"), name
    assert pages["IRP"].endswith("/ddi/wdm/ns-wdm-_irp")
    assert pages["MDL"].endswith("/ddi/wdm/ns-wdm-_mdl")
    assert pages["PIO_COMPLETION_ROUTINE"].endswith("/ddi/wdm/nc-wdm-io_completion_routine")


def test_names_without_a_page_get_no_link(pages: dict[str, str]) -> None:
    for name in ("WSK_FLAG_ABORTIVE", "KEVENT", "KDPC", "STATUS_SUCCESS", "WskStream"):
        assert name not in pages


README_PROGRAMS = re.findall(
    r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.DOTALL
)


@pytest.mark.parametrize(
    ("program", "expected"),
    [
        (README_PROGRAMS[0], "received b'hello\\n'"),
        (README_PROGRAMS[1], "WskDisconnect completed: STATUS_SUCCESS"),
    ],
    ids=["first-program", "driver-style"],
)
def test_the_readme_programs_run(program: str, expected: str, tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", program],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout
