"""A fake SYNQ cloud: the v2 feedback endpoint and the command channel, over real HTTP.

``server`` holds :class:`FakeCloud`, the one object the simulator, the bench
and the tests start, a thin front over the rest: ``spec`` checks feedback
bodies against the cloud's OpenAPI document, ``feedback`` takes, records and
answers them, ``faults`` holds the switches that make it fail, stall, drop or
answer oddly, ``channel`` sends commands to the agent and matches its
answers. Every name they import is importable from here.
"""

from simulator.cloud.channel import COMMANDS_PATH
from simulator.cloud.common import Predicate
from simulator.cloud.faults import ODD_KINDS, REDIRECTED_PATH
from simulator.cloud.server import FakeCloud
from simulator.cloud.spec import FEEDBACK_PATH, SPEC_PATH, FeedbackValidator, load_feedback_schema

__all__ = [
    "COMMANDS_PATH",
    "FEEDBACK_PATH",
    "ODD_KINDS",
    "REDIRECTED_PATH",
    "SPEC_PATH",
    "FakeCloud",
    "FeedbackValidator",
    "Predicate",
    "load_feedback_schema",
]
