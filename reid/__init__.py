"""Wildweb re-identification engine: models, losses, training, metrics and local features.

This package imports no Django. Torch is imported only by the modules that need it
(``reid.model``, ``reid.train``, ``reid.inference`` ...), never by ``reid`` itself, so the web
process can import light modules such as ``reid.metrics`` or ``reid.fusion`` without torch.
"""

from __future__ import annotations

__version__ = "0.1.0"
