"""Benchmarks run by `make bench`: one module per area, each runnable as `python -m bench.<area>`.

Media stays on loopback, as in the tests: the agents the benchmarks start inherit this setting,
their Python clients read it too, and `running_agent` refuses a run whose agent selected a pair
with an end off loopback.
"""

import os

os.environ["VOICE_ICE_ADDRESSES"] = "127.0.0.1"
