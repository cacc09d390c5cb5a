"""The WSK subsystem ("the provider"): pywsk's counterpart of netio.sys.

Importing this package attaches the subsystem to :mod:`pywsk.wsk.registration`, so that
WskRegister / WskCaptureProviderNPI reach it.  Everything in it runs on one event loop, in
the provider thread (see :mod:`pywsk.provider.engine`).
"""

from __future__ import annotations

from ..wsk.registration import attach_provider
from .client import TransportOptions, WskClient, WskSubsystem, subsystem
from .engine import Engine, loop_flavour

__all__ = ["Engine", "TransportOptions", "WskClient", "WskSubsystem", "loop_flavour", "subsystem"]

attach_provider(subsystem)
