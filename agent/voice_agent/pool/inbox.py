"""What goes into an agent's inbox channel (store/keys.py, `agent_inbox`): one envelope for the relay's
messages and for control messages from outside the agents.

The operator's sessions API (`kubectl delete voicesession`) sends a session's owner an `end` like the
one an agent sends when a client ends a session through another agent, and ends the record in Redis
once the owner has stopped the call (bounded wait): ended first, the call's next save would be
refused and read as another agent taking over. The owner closes the client's socket with 1000
(docs/api.md, "Close codes"). This
module imports nothing beyond the standard library, so the operator can use it without the agent's
media stack.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

# Kinds the relay dispatches (pool/relay.py); `end` and `assign` are control messages.
END = "end"


def message(
    kind: str, session_id: str, link: str, sender: str, body: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`t` is the send time: the receiver measures the relay's delay with it."""
    return {"k": kind, "s": session_id, "l": link, "f": sender, "t": time.time(), **(body or {})}


def encode(msg: Mapping[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))
