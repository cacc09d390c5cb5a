"""The bad-input campaign (campaign.py) under pytest and in a plain Python process.

Every dispatch function x every argument x (wrong type, wrong value, None), plus a NULL,
a non-IRP and a freed IRP: each call ends with an NTSTATUS and its IRP completed (or a
BugCheck before the IRP was taken, for memory the caller corrupted), nothing is reported
as an unraisable exception, and an unrelated connection keeps working.  With the verifier
off and on; once under pytest (its unraisable hook installed) and once in a subprocess
with Python's own hook, which is where a wrong hook argument used to escape.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from campaign import World, cases, run_case, specs

from pywsk import verifier

HERE = Path(__file__).parent
SPEC_NAMES = [spec.name for spec in specs()]


@pytest.mark.no_verifier
@pytest.mark.parametrize("with_verifier", [False, True], ids=["verifier-off", "verifier-on"])
@pytest.mark.parametrize("function", SPEC_NAMES)
def test_every_argument_of(function: str, with_verifier: bool) -> None:
    selected = [case for case in cases() if case.spec.name == function]
    spec = selected[0].spec
    # Every argument (and the IRP) is given bad values.
    irp = set() if spec.irp == "none" else {-1}
    assert {case.index for case in selected} == {*irp, *range(len(spec.kinds))}
    problems: list[str] = []

    def run() -> None:
        world = World()
        try:
            for case in selected:
                problem = run_case(world, case)
                if problem is not None:
                    problems.append(f"{case.id}: {problem}")
        finally:
            world.close()

    if with_verifier:
        with verifier.enabled_for(mode="collect") as running:
            run()
        if spec.irp == "required":
            # A NULL IRP is a report (IRP-007) as well as a status.
            assert any(v.check.id == "IRP-007" for v in running.found)
    else:
        run()
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("flag", [[], ["--verifier"]], ids=["verifier-off", "verifier-on"])
def test_campaign_in_a_plain_process(flag: list[str]) -> None:
    """No pytest hooks: Python's default unraisable hook, exactly as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    result = subprocess.run(
        [sys.executable, str(HERE / "campaign.py"), "--timeout", "240", *flag],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    summary = re.search(r"badinput: (\d+) cases tried, (\d+) clean", result.stdout)
    assert summary is not None, result.stdout + result.stderr
    tried, clean = int(summary.group(1)), int(summary.group(2))
    print(summary.group(0))  # the figure: cases tried, all clean
    assert tried == len(list(cases()))
    assert clean == tried, result.stdout
    assert result.returncode == 0
    # Nothing went to sys.unraisablehook, and nothing leaked (the verifier's exit report).
    assert result.stderr == "", result.stderr
