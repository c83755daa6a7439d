"""Local stand-ins for the Hugging Face Hub and Runware, on 127.0.0.1, speaking the real protocols.

The project's publish code talks to them through the real client libraries (``huggingface_hub`` over
HTTP, the ``runware`` SDK over a websocket). Both record what they received, so tests can check
what was sent, and both can inject faults (HTTP 5xx, a slow answer, a dropped websocket) to prove
the retries. ``python -m tests.standins`` (``make standins``) runs both for trying ``make publish``
by hand.
"""

from tests.standins.hub import HubStandIn
from tests.standins.runware import RunwareStandIn

__all__ = ["HubStandIn", "RunwareStandIn"]
