"""A task package of your own, complete: the ``long_read`` objective ("will this page stay in
front for at least 30 seconds?") and the ``relu_net`` model (one ReLU hidden layer, sigmoid
output). Importing the package registers both; ``dandelion bundle --with examples/engagement/
engagement`` puts it into the worker wheel. Standard library only: it runs in Pyodide.
"""

from __future__ import annotations

from .model import ReluNet
from .objective import LongRead

__all__ = ["LongRead", "ReluNet"]
