"""``python -m reid`` runs the command line."""

from __future__ import annotations

from reid.cli import main

raise SystemExit(main())
