"""``python -m pywsk`` is the ``pywsk`` command."""

from pywsk.cli import main

raise SystemExit(main())
