"""BugCheck: how pywsk reports a broken kernel-programming rule.

What it does: on Windows, breaking certain rules (waiting at DISPATCH_LEVEL, completing an
IRP twice, touching freed memory) stops the machine with a bug check.  pywsk raises
:class:`BugCheck` instead, in the thread that broke the rule, with the bug-check code and
its four parameters, and a message naming the rule.

What it refuses: it is never raised for a failure that Windows reports with an NTSTATUS;
those stay statuses.

What always holds: raising it leaves the provider and every other socket intact: the
check runs before any state is changed.
"""

from __future__ import annotations

import enum

__all__ = ["BugCheck", "BugCheckCode"]


class BugCheckCode(enum.IntEnum):
    """Bug-check codes pywsk can raise (values as in ``bugcodes.h``)."""

    IRQL_NOT_LESS_OR_EQUAL = 0x0000000A
    MULTIPLE_IRP_COMPLETE_REQUESTS = 0x00000044
    NO_MORE_IRP_STACK_LOCATIONS = 0x00000035
    DRIVER_IRQL_NOT_LESS_OR_EQUAL = 0x000000D1
    IRQL_NOT_GREATER_OR_EQUAL = 0x00000009
    MAXIMUM_WAIT_OBJECTS_EXCEEDED = 0x0000000C
    DRIVER_VERIFIER_DETECTED_VIOLATION = 0x000000C4
    DRIVER_CAUGHT_MODIFYING_FREED_POOL = 0x000000C6
    KERNEL_SECURITY_CHECK_FAILURE = 0x00000139


class BugCheck(RuntimeError):
    """A kernel rule was broken.  ``code`` and ``parameters`` follow KeBugCheckEx."""

    def __init__(
        self,
        code: BugCheckCode,
        message: str,
        *parameters: int,
    ) -> None:
        self.code = code
        self.parameters: tuple[int, ...] = (*parameters, 0, 0, 0, 0)[:4]
        self.rule = message
        params = ", ".join(f"0x{p:X}" for p in self.parameters)
        super().__init__(f"{code.name} (0x{int(code):X}; {params}): {message}")
