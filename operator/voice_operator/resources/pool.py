"""Everything a VoiceAgentPool owns, in creation order (the SA before the pods that use it)."""

from voice_operator.objects import Obj, Owner, render_serviceaccount
from voice_operator.resources.deployment import render_deployment
from voice_operator.resources.hpa import render_hpa
from voice_operator.resources.pdb import render_pdb
from voice_operator.resources.service import render_service
from voice_operator.spec import PoolSpec


def render_pool(owner: Owner, spec: PoolSpec) -> list[Obj]:
    return [
        render_serviceaccount(owner),
        render_service(owner, spec),
        render_pdb(owner, spec),
        render_deployment(owner, spec),
        render_hpa(owner, spec),
    ]
