"""A Microsoft Graph long-running-action simulator: the fake Graph of the tests, the demo and ``relay simulate``.

It imports nothing of relay's product code: it stands where Graph would.
"""

from relay.simulator.options import ACTION_ANSWERS, COMPLETIONS, MONITOR_STYLES, OUTCOMES, SimOperation, SimOptions
from relay.simulator.server import Simulator, run_simulator

__all__ = [
    "ACTION_ANSWERS",
    "COMPLETIONS",
    "MONITOR_STYLES",
    "OUTCOMES",
    "SimOperation",
    "SimOptions",
    "Simulator",
    "run_simulator",
]
