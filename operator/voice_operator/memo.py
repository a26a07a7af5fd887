"""What the operator keeps in kopf's memo.

kopf hands every handler a memo: the operator-wide one for lifecycle handlers, a shallow copy of it
per resource object for the others, so what is set here at startup is shared by all.
"""

import kopf

from voice_operator.config import OperatorConfig


class OperatorMemo(kopf.Memo):
    """kopf.Memo with the attributes the operator sets, typed (kopf.Memo reads them as dict keys)."""

    config: OperatorConfig  # read once, by __main__, before kopf starts
