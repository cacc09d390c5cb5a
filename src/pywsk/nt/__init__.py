"""The NT kernel pieces WSK stands on, with wdm.h spellings.

``from pywsk.nt import *`` plays the part of ``#include <wdm.h>`` / ``<ntstatus.h>``:
NTSTATUS codes and macros, IRPs and completion routines, MDLs and non-paged pool,
KEVENTs and waits, DPCs, IRQL, and :class:`BugCheck` for broken kernel rules.
"""

from .bugcheck import *
from .dpc import *
from .event import *
from .irp import *
from .irql import *
from .mdl import *
from .status import *
