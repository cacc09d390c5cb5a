"""The reference builds, with warnings as errors, and says what it should.

This is the build ``bash scripts/run docs`` runs (Sphinx, ``-W``), into a temporary
directory; ``bash scripts/run test`` therefore builds the reference too.  The checks catch
what a clean build does not: every API page documents its objects (autodoc output parsed
as Markdown would build without a warning and document nothing), and wsk.h / wdm.h names
link to Microsoft's pages - in text, not in code blocks or titles.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MICROSOFT = "https://learn.microsoft.com/windows-hardware/drivers/ddi/"

pytest.importorskip("sphinx", reason="the docs dependency group is not installed")
pytest.importorskip("myst_parser", reason="the docs dependency group is not installed")


@pytest.fixture(scope="module")
def html(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("html")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html"),
            *("-d", str(out / ".doctrees"), str(ROOT / "docs"), str(out)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return out


def page(html: Path, name: str) -> str:
    return (html / name).read_text(encoding="utf-8")


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("name", "objects"),
    [
        ("api/nt.html", ["pywsk.nt.irp.IoAllocateIrp", "pywsk.nt.status.NTSTATUS"]),
        ("api/wsk.html", ["pywsk.wsk.structs.WSK_BUF", "pywsk.wsk.registration.WskRegister"]),
        ("api/aio.html", ["pywsk.aio.connect", "pywsk.aio.Connection.disconnect"]),
        ("api/trio.html", ["pywsk.trio.open_connection", "pywsk.trio.WskStream"]),
        ("api/sync.html", ["pywsk.sync.connect", "pywsk.sync.Connection"]),
        ("api/errors.html", ["pywsk.errors.NtStatusError"]),
        ("api/verifier.html", ["pywsk.verifier.enable", "pywsk.verifier.faults.FaultScheduler"]),
        ("api/testing.html", ["pywsk.testing.peer.LoopbackPeer"]),
        ("api/logging.html", ["pywsk._log.log_operation"]),
        (
            "api/client.html",
            ["pywsk.client.runtime.Client", "pywsk.trace.Recorder", "pywsk.core.ending.Ending"],
        ),
    ],
)
def test_each_api_page_documents_its_objects(html: Path, name: str, objects: list[str]) -> None:
    text = page(html, name)
    for obj in objects:
        assert f'id="{obj}"' in text, obj


@pytest.mark.timeout(300)
def test_an_object_opens_with_its_microsoft_page(html: Path) -> None:
    text = page(html, "api/wsk.html")
    entry = text[text.index('id="pywsk.wsk.structs.WSK_BUF"') :]
    entry = entry[: entry.index("</dd></dl>")]
    assert f'href="{MICROSOFT}wsk/ns-wsk-_wsk_buf">WSK_BUF (wsk.h)</a>' in entry
    nt = page(html, "api/nt.html")
    assert f'href="{MICROSOFT}wdm/nf-wdm-ioallocateirp">IoAllocateIrp (wdm.h)</a>' in nt


@pytest.mark.timeout(300)
def test_names_in_the_narrative_pages_link_to_microsoft(html: Path) -> None:
    text = page(html, "layers.html")
    link = f'<a class="microsoft-page reference external" href="{MICROSOFT}wsk/nc-wsk-pfn_wsk_disconnect">'
    assert link in text
    for name in ("design.html", "fidelity.html", "verifier.html"):
        body = page(html, name)
        assert "microsoft-page" in body
        # Never inside a code block or a heading.
        assert not re.search(r"<pre>(?:(?!</pre>).)*microsoft-page", body, re.DOTALL)
        assert not re.search(r"<h[1-6][^>]*>(?:(?!</h[1-6]>).)*microsoft-page", body, re.DOTALL)
