"""Sphinx extension: every wsk.h / wdm.h name in the reference links to Microsoft's page.

What it does: :func:`microsoft_pages` generates the mapping from a name to its page on
learn.microsoft.com from pywsk itself - the public names of :mod:`pywsk.wsk` and
:mod:`pywsk.nt`, and the members of the dispatch tables (``WskSend`` -> the page of its
type, ``PFN_WSK_SEND``) - using Microsoft's URL scheme: ``nf-<header>-<function>``,
``ns-<header>-_<struct>``, ``ne-<header>-_<enum>``, ``nc-<header>-<callback type>``, all
lower case.  A name gets a link only when its page is in :data:`KNOWN_PAGES`, the pages
checked to exist (against the MicrosoftDocs/windows-driver-docs-ddi repository, which
the site is built from): a generated guess never becomes a broken link.

Then, in every page (API reference and narrative pages alike):

* an object documented by autodoc whose name is such a name (``IoAllocateIrp``,
  ``WSK_BUF``, ``PFN_WSK_DISCONNECT``) opens with a link to Microsoft's page;
* each such name in running text or inline code (``WskDisconnect``) becomes a link,
  except inside code blocks, titles, signatures and links that already exist (an explicit
  cross-reference to pywsk's own object stays one: that object's entry links onwards).

What it refuses: to link a name it cannot place (constants such as ``WSK_FLAG_ABORTIVE``
have no page of their own; ``KEVENT`` and ``KDPC`` are opaque, without a page).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

BASE = "https://learn.microsoft.com/windows-hardware/drivers/ddi"


def _slugs(prefix: str, names: str) -> list[str]:
    return [prefix + name for name in names.split()]


#: Microsoft's pages, by header, that the generated names may map to (each checked to
#: exist).  Adding a page here is all it takes for its name to be linked.
KNOWN_PAGES: dict[str, frozenset[str]] = {
    "wsk": frozenset(
        [
            *_slugs(
                "nc-wsk-pfn_wsk_",
                "abort_event accept accept_event bind client_event close_socket connect "
                "connect_ex control_client control_socket disconnect disconnect_event "
                "free_address_info get_address_info get_local_address get_name_info "
                "get_remote_address inspect_complete inspect_event listen receive "
                "receive_event receive_ex receive_from receive_from_event "
                "release_data_indication_list release_datagram_indication_list send "
                "send_backlog_event send_ex send_messages send_to socket socket_connect",
            ),
            *_slugs(
                "nf-wsk-",
                "wskcaptureprovidernpi wskderegister wskqueryprovidercharacteristics "
                "wskregister wskreleaseprovidernpi",
            ),
            *_slugs(
                "ns-wsk-_wsk_",
                "buf client_connection_dispatch client_datagram_dispatch client_dispatch "
                "client_listen_dispatch client_npi client_stream_dispatch data_indication "
                "datagram_indication event_callback_control extension_control_in "
                "extension_control_out inspect_id provider_basic_dispatch "
                "provider_characteristics provider_connection_dispatch "
                "provider_datagram_dispatch provider_dispatch provider_listen_dispatch "
                "provider_npi provider_stream_dispatch registration socket tdi_map "
                "tdi_map_info transport",
            ),
        ]
    ),
    "wdm": frozenset(
        [
            *_slugs(
                "nf-wdm-",
                "exallocatepool2 exallocatepoolwithtag exfreepool exfreepoolwithtag "
                "exinterlockedinsertheadlist exinterlockedinserttaillist "
                "exinterlockedremoveheadlist ioinitializeirp iosizeofirp keacquirespinlock "
                "keinitializespinlock kereleasespinlock kewaitformultipleobjects "
                "exraisestatus ioallocateirp ioallocatemdl iocancelirp iocompleterequest "
                "iofreeirp iofreemdl iogetcurrentirpstacklocation iomarkirppending "
                "ioreleasecancelspinlock ioreuseirp iosetcancelroutine "
                "iosetcompletionroutine kebugcheckex keclearevent kegetcurrentirql "
                "keinitializedpc keinitializeevent keinsertqueuedpc kelowerirql "
                "kequerysystemtime kequerysystemtimeprecise keraiseirql "
                "keraiseirqltodpclevel kereadstateevent keremovequeuedpc keresetevent "
                "kesetevent kesetimportancedpc kesettargetprocessordpc "
                "kewaitforsingleobject mmbuildmdlfornonpagedpool mmgetmdlbytecount "
                "mmgetmdlbyteoffset mmgetsystemaddressformdlsafe mmprobeandlockpages "
                "mmunlockpages rtlinitunicodestring rtlulongbyteswap rtlushortbyteswap",
            ),
            "ns-wdm-_irp",
            "ns-wdm-_mdl",
            "ns-wdm-_io_status_block",
            "ns-wdm-_io_stack_location",
            "ns-wdm-_device_object",
            "ne-wdm-_pool_type",
            "ne-wdm-_lock_operation",
            "nc-wdm-io_completion_routine",
            "nc-wdm-driver_cancel",
            "nc-wdm-kdeferred_routine",
        ]
    ),
}

#: Names used in the text without being pywsk names (routines pywsk mentions but does not
#: provide), placed by the same rules.
MENTIONED = (
    "KeBugCheckEx",
    "KeSetImportanceDpc",
    "KeSetTargetProcessorDpc",
    "IoGetCurrentIrpStackLocation",
    "IoReleaseCancelSpinLock",
    "ExRaiseStatus",
    "IO_STACK_LOCATION",
)

#: Dispatch-table members whose type pywsk does not name (declared as a plain Callable, or
#: in tables pywsk does not implement), with the type Microsoft gives them.
MEMBER_TYPES = {
    "WskGetAddressInfo": "PFN_WSK_GET_ADDRESS_INFO",
    "WskFreeAddressInfo": "PFN_WSK_FREE_ADDRESS_INFO",
    "WskGetNameInfo": "PFN_WSK_GET_NAME_INFO",
    "WskSendTo": "PFN_WSK_SEND_TO",
    "WskSendMessages": "PFN_WSK_SEND_MESSAGES",
    "WskReceiveFrom": "PFN_WSK_RECEIVE_FROM",
    "WskReceiveFromEvent": "PFN_WSK_RECEIVE_FROM_EVENT",
}


def _candidates(name: str) -> Iterator[str]:
    lower = name.lower()
    for header in KNOWN_PAGES:
        yield f"nf-{header}-{lower}"
        yield f"ns-{header}-_{lower}"
        yield f"ne-{header}-_{lower}"
        yield f"nc-{header}-{lower}"
        if lower.startswith("p"):  # PIO_COMPLETION_ROUTINE -> IO_COMPLETION_ROUTINE
            yield f"nc-{header}-{lower[1:]}"


def page_of(name: str) -> str | None:
    """The URL of Microsoft's page for ``name``, if it has a known one."""
    for slug in _candidates(name):
        header = slug.split("-")[1]
        if slug in KNOWN_PAGES[header]:
            return f"{BASE}/{header}/{slug}"
    return None


def _dispatch_members() -> dict[str, str]:
    """``WskSend`` -> ``PFN_WSK_SEND``: each dispatch-table member and its type."""
    from pywsk.wsk import dispatch

    members = dict(MEMBER_TYPES)
    for _name, table in inspect.getmembers(dispatch, inspect.isclass):
        for member, annotation in getattr(table, "__annotations__", {}).items():
            found = re.search(r"PFN_WSK_[A-Z_]+", str(annotation))
            if found and member.startswith("Wsk"):
                members[member] = found.group()
    return members


def microsoft_pages() -> dict[str, str]:
    """Every wsk.h / wdm.h name pywsk uses that has a page: name -> URL."""
    import pywsk.nt
    import pywsk.wsk

    names = {n for module in (pywsk.nt, pywsk.wsk) for n in dir(module) if n[:1].isupper()}
    pages = {name: url for name in sorted({*names, *MENTIONED}) if (url := page_of(name))}
    for member, type_name in _dispatch_members().items():
        url = page_of(type_name)
        if url is not None:
            pages.setdefault(member, url)
    return pages


# --------------------------------------------------------------------------------------------
# Sphinx
# --------------------------------------------------------------------------------------------

_SKIP = (
    nodes.literal_block,
    nodes.reference,
    nodes.title,
    nodes.raw,
    nodes.comment,
    nodes.FixedTextElement,
)


def _link(url: str, child: nodes.Node) -> nodes.reference:
    ref = nodes.reference("", "", internal=False, refuri=url, classes=["microsoft-page"])
    ref += child
    return ref


def _inside_skipped(node: nodes.Node) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, _SKIP) or parent.tagname.startswith("desc_sig"):
            return True
        if parent.tagname == "desc_signature":
            return True
        parent = parent.parent
    return False


class LinkMicrosoftNames(SphinxPostTransform):
    """Turn wsk.h / wdm.h names in text and inline code into links to Microsoft's pages."""

    default_priority = 20  # after references are resolved (10): existing links stay

    def run(self, **kwargs: Any) -> None:
        pages: dict[str, str] = self.app.env.wsk_pages  # type: ignore[attr-defined]
        pattern: re.Pattern[str] = self.app.env.wsk_pattern  # type: ignore[attr-defined]
        for literal in list(self.document.findall(nodes.literal)):
            name = literal.astext().removesuffix("()")
            if name in pages and not _inside_skipped(literal):
                literal.replace_self(_link(pages[name], literal.deepcopy()))
        for text in list(self.document.findall(nodes.Text)):
            parent = text.parent
            if parent is None or isinstance(parent, nodes.literal) or _inside_skipped(text):
                continue
            source = str(text)
            pieces = pattern.split(source)
            if len(pieces) == 1:
                continue
            replacement: list[nodes.Node] = []
            for index, piece in enumerate(pieces):
                if index % 2:
                    replacement.append(_link(pages[piece], nodes.Text(piece)))
                elif piece:
                    replacement.append(nodes.Text(piece))
            parent.replace(text, replacement)


def _docstring_link(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """An object named like a wsk.h / wdm.h name opens with a link to Microsoft's page."""
    if not name.startswith(("pywsk.nt.", "pywsk.wsk.")):
        return
    short = name.rsplit(".", 1)[-1]
    url = app.env.wsk_pages.get(short)  # type: ignore[attr-defined]
    if url is not None:
        header = url.split("/")[-2]
        lines[:0] = [f"Microsoft's page: `{short} ({header}.h) <{url}>`__", ""]


def _prepare(app: Sphinx) -> None:
    pages = microsoft_pages()
    app.env.wsk_pages = pages  # type: ignore[attr-defined]
    alternatives = "|".join(sorted(map(re.escape, pages), key=len, reverse=True))
    app.env.wsk_pattern = re.compile(rf"(?<![\w.])({alternatives})(?![\w])")  # type: ignore[attr-defined]


def setup(app: Sphinx) -> dict[str, Any]:
    app.connect("builder-inited", _prepare)
    app.connect("autodoc-process-docstring", _docstring_link)
    app.add_post_transform(LinkMicrosoftNames)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
