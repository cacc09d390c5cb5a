"""The WSK subsystem ("the provider"): pywsk's counterpart of netio.sys.

Importing this package attaches the subsystem to :mod:`pywsk.wsk.registration`, so that
WskRegister / WskCaptureProviderNPI reach it.  Everything in it runs on one event loop, in
the provider thread (see :mod:`pywsk.provider.engine`).
"""

from __future__ import annotations

import importlib
import os

from ..wsk.registration import attach_provider
from .client import TransportOptions, WskClient, WskSubsystem, subsystem
from .engine import Engine, loop_flavour

__all__ = ["Engine", "TransportOptions", "WskClient", "WskSubsystem", "loop_flavour", "subsystem"]

attach_provider(subsystem)

if os.environ.get("PYWSK_VERIFIER", "") not in ("", "0"):
    # The verifier observes from the first object on (it enables itself on import).
    importlib.import_module("pywsk.verifier")
