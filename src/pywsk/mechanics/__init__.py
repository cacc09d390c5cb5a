"""Linux mechanics: the kernel facts and calls behind WSK's semantics, shared by every front-end.

The layer between the sans-I/O :mod:`pywsk.core` (states, verdicts, statuses) and the
front-ends that do I/O: the faithful WSK :mod:`pywsk.provider` and the Pythonic layers.
Each recipe here was measured on the target kernel (FIN acknowledged, RST without losing
the descriptor, FIN versus RST from the durable TCP state, errno to NTSTATUS) and exists
once; a front-end decides only when to call it.

What it refuses: to keep per-connection state or to block.
"""
