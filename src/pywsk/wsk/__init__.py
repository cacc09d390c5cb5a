"""The ``wsk.h`` surface: constants, structures, dispatch tables and registration.

``from pywsk.wsk import *`` plays the part of ``#include <wsk.h>``.  The provider's
functions (WskSocket, WskSend, WskDisconnect, ...) are reached as in C, through the
dispatch tables the provider hands out: ``ProviderNpi.Dispatch.WskSocket(...)``,
``Socket.Dispatch.WskDisconnect(...)``.
"""

from .cmsg import *
from .constants import *
from .dispatch import *
from .registration import *
from .structs import *
