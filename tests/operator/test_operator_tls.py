"""The external metrics API over TLS, open only to clients with a certificate of the given CA."""

import pathlib
import ssl

import aiohttp
import pytest

from tests.operator.certs import Authority, Issued
from tests.operator.cluster import Cluster
from tests.operator.harness import StartOperator

DISCOVERY = "/apis/external.metrics.k8s.io/v1beta1"


def client_context(ca: Authority, identity: Issued | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca.path))
    if identity is not None:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    return context


async def get(url: str, context: ssl.SSLContext) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, ssl=context) as resp:
        return resp.status


async def test_metrics_api_requires_a_client_certificate_of_the_front_proxy_ca(
    cluster: Cluster, start_operator: StartOperator, tmp_path: pathlib.Path
) -> None:
    serving = Authority(tmp_path, "serving-ca")
    front_proxy = Authority(tmp_path, "front-proxy-ca")
    stranger = Authority(tmp_path, "stranger-ca")
    server = serving.issue("voicepool-operator", server=True)
    op = start_operator(
        VOICE_OPERATOR_TLS_CERT=str(server.cert),
        VOICE_OPERATOR_TLS_KEY=str(server.key),
        VOICE_OPERATOR_CLIENT_CA=str(front_proxy.path),
    )
    await op.wait_started()
    base = f"https://127.0.0.1:{op.ports['external']}"

    # The API server's aggregator presents its front-proxy client certificate.
    aggregator = client_context(serving, front_proxy.issue("front-proxy-client"))
    assert await get(base + DISCOVERY, aggregator) == 200
    # Anyone else: no certificate -> 401; a certificate of another CA fails the handshake.
    assert await get(base + DISCOVERY, client_context(serving, None)) == 401
    with pytest.raises(aiohttp.ClientError):
        await get(base + DISCOVERY, client_context(serving, stranger.issue("intruder")))
    # Probes need no certificate.
    assert await get(base + "/healthz", client_context(serving, None)) == 200
