"""The NT kernel pieces WSK stands on, with wdm.h spellings.

``from pywsk.nt import *`` plays the part of ``#include <wdm.h>`` / ``<ntstatus.h>``:
NTSTATUS codes and macros, IRPs and completion routines, MDLs and non-paged pool,
KEVENTs and waits, DPCs, IRQL, and :class:`BugCheck` for broken kernel rules; and for
ports from C, the Interlocked family, spin locks and LIST_ENTRY lists, and ntdef.h's
TRUE/FALSE/NULL, ASSERT, PAGED_CODE, DbgPrint/KdPrint and CONTAINING_RECORD
(``docs/porting.md``).
"""

from .bugcheck import *
from .dpc import *
from .event import *
from .interlocked import *
from .irp import *
from .irql import *
from .mdl import *
from .ntdef import *
from .pool import *
from .status import *
