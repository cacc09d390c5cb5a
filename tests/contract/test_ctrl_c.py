"""One Ctrl-C stops a program stuck in ``send_all`` to a peer that never reads, on every
Pythonic layer: the program runs in a subprocess, the peer (this test) accepts and never
reads; once data arrived the test sends one SIGINT and the program must end within 2 s.

Cancellation follows trio's rule: the cancelled send leaves the connection broken, and the
close that follows resets it - the peer sees an RST, not a FIN.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from pywsk.core.ending import How
from pywsk.testing.contract import peer_reads_to_end, plain_listener

#: Make SIGINT raise KeyboardInterrupt in the child even when this test runs where SIGINT
#: is ignored (a background job inherits SIG_IGN, and Python then keeps it).
PREAMBLE = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"

CONNECT_OPTIONS = "options=((SOL_SOCKET, SO_SNDBUF, 4096),)"

PROGRAMS = {
    "asyncio": f"""
        import asyncio, sys
        import pywsk.aio
        from pywsk.wsk import SO_SNDBUF, SOL_SOCKET

        async def main():
            conn = await pywsk.aio.connect("127.0.0.1", int(sys.argv[1]), {CONNECT_OPTIONS})
            async with conn:
                await conn.send_all(b"x" * (64 << 20))

        asyncio.run(main())
    """,
    "uvloop": f"""
        import sys
        import pywsk.aio
        from pywsk.wsk import SO_SNDBUF, SOL_SOCKET

        async def main():
            conn = await pywsk.aio.connect("127.0.0.1", int(sys.argv[1]), {CONNECT_OPTIONS})
            async with conn:
                await conn.send_all(b"x" * (64 << 20))

        pywsk.aio.run(main())
    """,
    "trio": f"""
        import sys, trio
        import pywsk.trio
        from pywsk.wsk import SO_SNDBUF, SOL_SOCKET

        async def main():
            stream = await pywsk.trio.open_connection(
                "127.0.0.1", int(sys.argv[1]), {CONNECT_OPTIONS}
            )
            async with stream:
                while True:
                    await stream.send_all(b"x" * (1 << 20))

        trio.run(main)
    """,
    "sync": f"""
        import sys
        import pywsk.sync
        from pywsk.wsk import SO_SNDBUF, SOL_SOCKET

        with pywsk.sync.connect("127.0.0.1", int(sys.argv[1]), {CONNECT_OPTIONS}) as conn:
            conn.send(b"x" * (64 << 20))
    """,
}


@pytest.mark.parametrize("layer", list(PROGRAMS))
def test_one_sigint_stops_a_send_to_a_peer_that_never_reads(layer: str) -> None:
    program = PREAMBLE + textwrap.dedent(PROGRAMS[layer])
    with plain_listener(small_buffers=True) as listener:
        port = listener.getsockname()[1]
        child = subprocess.Popen(
            [sys.executable, "-c", program, str(port)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            peer, _ = listener.accept()
            with peer:
                readable, _, _ = select.select([peer], [], [], 10)
                assert readable, "the program sent nothing"
                child.send_signal(signal.SIGINT)
                signalled = time.monotonic()
                try:
                    _out, err = child.communicate(timeout=10)
                except subprocess.TimeoutExpired:
                    pytest.fail(f"{layer}: still running 10 s after one SIGINT")
                took = time.monotonic() - signalled
                assert "KeyboardInterrupt" in err, err
                assert took < 2.0, f"{layer}: ended {took:.2f} s after the SIGINT"
                peer.settimeout(10)
                _data, end = peer_reads_to_end(peer)
                assert end is How.RST, f"{layer}: the peer saw a {end}"
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()
