"""``python -m pywsk.cli`` is the ``pywsk`` command."""

from . import main

raise SystemExit(main())
