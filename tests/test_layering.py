"""The package's layer rule, checked on the source with ``ast``, and the star-import surface.

Layers, in order: ``nt`` -> ``wsk`` -> ``core`` -> ``mechanics`` (Linux) -> ``provider`` -> the
top tier (``aio``, ``verifier``, ``cli``, ``testing``, ``client`` - the driver-style client
runtime - and its tracer ``trace``, and ``samples``, the sample client
driver that the demo runs).  A module may import (absolutely, ``pywsk.X``, or relatively) only from its own layer
or an earlier one.  ``core`` is sans-I/O: neither it nor anything it reaches inside pywsk may
import sockets, selectors, threads, asyncio or clocks, or the IRP / KEVENT / MDL modules.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "pywsk"

#: Layer index of each subpackage of pywsk.  The top tier is one layer: its members may
#: import each other (the demo in ``cli`` runs ``testing`` helpers and the ``samples`` driver).
LAYERS: dict[str, int] = {
    "nt": 0,
    "_log": 0,
    "wsk": 1,
    "core": 2,
    "mechanics": 3,
    "provider": 4,
    "_native": 5,
    "errors": 5,
    "_receiving": 5,
    "aio": 5,
    "trio": 5,
    "sync": 5,
    "verifier": 5,
    "cli": 5,
    "client": 5,
    "trace": 5,
    "testing": 5,
    "cdriver": 5,
    "samples": 5,
    "__main__": 5,
}

#: Standard-library modules a sans-I/O module must not reach.
CORE_FORBIDDEN_STDLIB = frozenset({"socket", "select", "selectors", "threading", "asyncio", "time"})
#: pywsk modules ``core`` must not reach (the ``pywsk.nt`` package re-exports all of them).
CORE_FORBIDDEN_PYWSK = frozenset({"pywsk.nt", "pywsk.nt.irp", "pywsk.nt.event", "pywsk.nt.mdl"})

#: Imports by name string (``importlib.import_module``) that the rule allows on purpose:
#: registration reaches the provider the way a client reaches netio.sys through the NMR,
#: without a static import (see the module docstring of pywsk.wsk.registration); the
#: provider loads the verifier when PYWSK_VERIFIER asks for it before anything else runs.
DYNAMIC_IMPORT_EXCEPTIONS = frozenset(
    {
        ("pywsk.wsk.registration", "pywsk.provider"),
        ("pywsk.provider", "pywsk.verifier"),
    }
)


@dataclass(frozen=True)
class Import:
    """One import statement, resolved to an absolute module name."""

    importer: str
    target: str
    line: int
    dynamic: bool = False


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def resolve_relative(importer: str, importer_is_package: bool, level: int, module: str) -> str:
    """The absolute name of ``from <'.' * level><module> import ...`` inside ``importer``."""
    base = importer.split(".")
    if not importer_is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, *([module] if module else [])])


def imports_of(name: str, path: Path) -> list[Import]:
    """Every import in ``path`` (module level, in functions, under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(Import(name, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                target = resolve_relative(name, is_package(path), node.level, node.module or "")
            else:
                target = node.module or ""
            if target == "__future__":
                continue
            found.append(Import(name, target, node.lineno))
            # ``from . import linux`` / ``from ..samples import disconnect_socket``: the
            # imported name may itself be a submodule.
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                if sub in MODULES:
                    found.append(Import(name, sub, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(name, node.args[0].value, node.lineno, dynamic=True))
    return found


IMPORTS: dict[str, list[Import]] = {name: imports_of(name, path) for name, path in MODULES.items()}


def layer_of(module: str) -> int | None:
    """The layer of a pywsk module; None for the root package ``pywsk`` itself."""
    parts = module.split(".")
    if parts[0] != "pywsk" or len(parts) < 2:
        return None
    return LAYERS[parts[1]]


def pywsk_targets(module: str) -> list[Import]:
    return [imp for imp in IMPORTS[module] if imp.target.split(".")[0] == "pywsk"]


def test_the_source_tree_was_found() -> None:
    assert "pywsk.nt.irp" in MODULES
    assert "pywsk.core.connection" in MODULES
    assert "pywsk.provider.client" in MODULES
    # Relative imports are resolved: provider.client imports ``from ..mechanics import linux``.
    targets = {imp.target for imp in IMPORTS["pywsk.provider.client"]}
    assert {"pywsk.mechanics.linux", "pywsk.nt.irp", "pywsk.wsk.registration"} <= targets


def test_resolve_relative() -> None:
    assert resolve_relative("pywsk.nt.irp", False, 1, "status") == "pywsk.nt.status"
    assert resolve_relative("pywsk.nt", True, 1, "irp") == "pywsk.nt.irp"
    assert resolve_relative("pywsk.wsk.structs", False, 2, "nt.mdl") == "pywsk.nt.mdl"
    assert resolve_relative("pywsk.provider", True, 2, "wsk.registration") == (
        "pywsk.wsk.registration"
    )
    assert resolve_relative("pywsk.provider.client", False, 1, "") == "pywsk.provider"


def test_every_subpackage_has_a_layer() -> None:
    subpackages = {name.split(".")[1] for name in MODULES if name.count(".") >= 1}
    unknown = subpackages - set(LAYERS)
    assert not unknown, f"subpackages without a layer in the rule: {sorted(unknown)}"


def test_the_root_package_imports_nothing_from_pywsk() -> None:
    assert pywsk_targets("pywsk") == []


def layer_violations(module: str, imports: list[Import]) -> list[str]:
    """The imports of ``module`` that break the layer rule, described."""
    own = layer_of(module)
    assert own is not None
    violations = []
    for imp in imports:
        if imp.target.split(".")[0] != "pywsk":
            continue
        if imp.dynamic and (module, imp.target) in DYNAMIC_IMPORT_EXCEPTIONS:
            continue
        target_layer = layer_of(imp.target)
        if target_layer is None:
            violations.append(f"line {imp.line}: imports the root package {imp.target}")
        elif target_layer > own:
            violations.append(f"line {imp.line}: imports the later layer {imp.target}")
    return violations


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "pywsk"))
def test_imports_only_from_its_own_or_earlier_layers(module: str) -> None:
    violations = layer_violations(module, IMPORTS[module])
    assert not violations, f"{module}: " + "; ".join(violations)


def test_the_checker_sees_violations(tmp_path: Path) -> None:
    """The rule is not vacuous: a core module importing the provider (absolutely, relatively,
    inside a function, or by name) is caught; an earlier layer is not."""
    source = tmp_path / "fake.py"
    source.write_text(
        "from __future__ import annotations\n"
        "import pywsk.provider.engine\n"
        "from ..provider import client\n"
        "from ..nt.status import NTSTATUS\n"
        "def later() -> None:\n"
        "    from ..testing import driver\n"
        "    importlib.import_module('pywsk.cli')\n",
        encoding="utf-8",
    )
    found = layer_violations("pywsk.core.fake", imports_of("pywsk.core.fake", source))
    lines = {v.split(":")[0] for v in found}
    assert lines == {"line 2", "line 3", "line 6", "line 7"}, found
    assert any("pywsk.provider.client" in v for v in found)
    assert any("pywsk.testing.driver" in v for v in found)
    assert any("pywsk.cli" in v for v in found)


def test_the_dynamic_import_exception_is_still_needed() -> None:
    """The allow-list names only imports that exist (so it cannot hide a new one)."""
    for importer, target in DYNAMIC_IMPORT_EXCEPTIONS:
        assert any(imp.dynamic and imp.target == target for imp in IMPORTS[importer])


def reached_from(module: str) -> dict[str, Import]:
    """Every pywsk module ``module`` reaches through imports, with the import that did it."""
    seen: dict[str, Import] = {}
    stack = [module]
    while stack:
        current = stack.pop()
        for imp in pywsk_targets(current):
            if imp.target in MODULES and imp.target not in seen:
                seen[imp.target] = imp
                stack.append(imp.target)
    return seen


CORE_MODULES = sorted(m for m in MODULES if m == "pywsk.core" or m.startswith("pywsk.core."))


def test_core_has_modules() -> None:
    assert "pywsk.core.connection" in CORE_MODULES


@pytest.mark.parametrize("module", CORE_MODULES)
def test_core_is_sans_io(module: str) -> None:
    reached = reached_from(module)
    for candidate in [module, *reached]:
        for imp in IMPORTS[candidate]:
            top = imp.target.split(".")[0]
            assert top not in CORE_FORBIDDEN_STDLIB, (
                f"{module} reaches {top} through {candidate} line {imp.line}"
            )
    bad = sorted(set(reached) & CORE_FORBIDDEN_PYWSK)
    assert not bad, f"{module} reaches {bad}: " + "; ".join(
        f"{reached[b].importer} line {reached[b].line}" for b in bad
    )


def test_core_may_import_nt_status() -> None:
    assert "pywsk.nt.status" in {imp.target for imp in IMPORTS["pywsk.core.connection"]}


# --- the star-import surface ------------------------------------------------------------------

NT_KEY_NAMES = [
    "NTSTATUS",
    "NT_SUCCESS",
    "NT_ERROR",
    "STATUS_SUCCESS",
    "STATUS_PENDING",
    "STATUS_CANCELLED",
    "STATUS_MORE_PROCESSING_REQUIRED",
    "status_name",
    "BugCheck",
    "BugCheckCode",
    "IRP",
    "IO_STATUS_BLOCK",
    "IoAllocateIrp",
    "IoSetCompletionRoutine",
    "IoSetCancelRoutine",
    "IoMarkIrpPending",
    "IoCompleteRequest",
    "IoCancelIrp",
    "IoReuseIrp",
    "IoFreeIrp",
    "KEVENT",
    "KeInitializeEvent",
    "KeSetEvent",
    "KeWaitForSingleObject",
    "IoAllocateMdl",
    "IoFreeMdl",
    "MmBuildMdlForNonPagedPool",
    "ExAllocatePoolWithTag",
    "PASSIVE_LEVEL",
    "DISPATCH_LEVEL",
    "KeGetCurrentIrql",
    "KeRaiseIrql",
    "KeLowerIrql",
]

WSK_KEY_NAMES = [
    "WSK_BUF",
    "WSK_FLAG_ABORTIVE",
    "WSK_FLAG_CONNECTION_SOCKET",
    "WSK_FLAG_LISTEN_SOCKET",
    "WskRegister",
    "WskDeregister",
    "WskCaptureProviderNPI",
    "WskReleaseProviderNPI",
    "WskQueryProviderCharacteristics",
    "WSK_CLIENT_NPI",
    "WSK_CLIENT_DISPATCH",
    "WSK_REGISTRATION",
    "WSK_PROVIDER_NPI",
    "WSK_PROVIDER_DISPATCH",
    "WSK_PROVIDER_BASIC_DISPATCH",
    "WSK_PROVIDER_CONNECTION_DISPATCH",
    "WSK_CLIENT_CONNECTION_DISPATCH",
    "WSK_SOCKET",
    "MAKE_WSK_VERSION",
    "WSK_MAJOR_VERSION",
    "WSK_MINOR_VERSION",
    "SOCKADDR_IN",
    "SOCKADDR_IN6",
    "SOCKADDR_STORAGE",
    "IN4ADDR_SETLOOPBACK",
    "sockaddr_from_tuple",
    "WSK_INFINITE_WAIT",
    "WSK_NO_WAIT",
    "AF_INET",
    "AF_INET6",
    "SOCK_STREAM",
    "IPPROTO_TCP",
    "SO_WSK_EVENT_CALLBACK",
    "WSK_EVENT_RECEIVE",
    "WSK_EVENT_DISCONNECT",
]


def star(module: str) -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(f"from {module} import *", namespace)
    namespace.pop("__builtins__", None)
    return namespace


@pytest.mark.parametrize(
    ("module", "names"), [("pywsk.nt", NT_KEY_NAMES), ("pywsk.wsk", WSK_KEY_NAMES)]
)
def test_star_import_provides_the_key_names(module: str, names: list[str]) -> None:
    namespace = star(module)
    missing = [name for name in names if name not in namespace]
    assert not missing, f"from {module} import * lacks {missing}"


@pytest.mark.parametrize("module", ["pywsk.nt", "pywsk.wsk"])
def test_star_import_leaks_no_private_name(module: str) -> None:
    leaked = sorted(name for name in star(module) if name.startswith("_"))
    assert not leaked, f"from {module} import * leaks {leaked}"


def test_star_imports_agree_on_shared_names() -> None:
    """Driver code does both star imports; a name both give must mean the same thing."""
    nt, wsk = star("pywsk.nt"), star("pywsk.wsk")
    clashes = sorted(name for name in set(nt) & set(wsk) if nt[name] is not wsk[name])
    assert not clashes


def test_star_import_values_are_the_real_objects() -> None:
    from pywsk.nt import irp, status
    from pywsk.wsk import registration

    nt, wsk = star("pywsk.nt"), star("pywsk.wsk")
    assert nt["IoCompleteRequest"] is irp.IoCompleteRequest
    assert nt["STATUS_SUCCESS"] is status.NTSTATUS.STATUS_SUCCESS
    assert wsk["WskRegister"] is registration.WskRegister
