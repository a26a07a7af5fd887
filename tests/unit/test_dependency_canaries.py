"""Canaries for the private internals of aiortc, aioice and uvicorn the agent relies on.

pyproject.toml caps them below their next release; when a cap is raised, these say in one line
which internal moved, instead of calls going mute (aiortc), ICE gathering on addresses it should not
(aioice) or slow-loris protection silently vanishing (uvicorn). Behaviour over real connections is
tested elsewhere (tests/agent, tests/reliability).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import aioice.ice
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame

from voice_agent.media import receive

AIOICE = "aioice internals changed (media/ice.py narrows its address lookup, reads its nominated pairs)"
AIORTC = "aiortc internals changed (media/receive.py swaps the receiver's jitter buffer)"
UVICORN = "uvicorn internals changed (server/http_protocol.py subclasses HttpToolsProtocol)"


async def test_aiortc_audio_receiver_keeps_its_jitter_buffer_where_we_swap_it() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        assert hasattr(receiver, receive._ATTR), f"{AIORTC}: no {receive._ATTR}"
        assert getattr(receiver, "_RTCRtpReceiver__kind", None) == "audio", f"{AIORTC}: no __kind"
        assert isinstance(getattr(receiver, receive._ATTR), JitterBuffer), f"{AIORTC}: buffer type"
        assert receive.set_audio_prefetch(receiver, 0), f"{AIORTC}: the swap did not take"
        assert receive.current_prefetch(receiver) == 0
    finally:
        await pc.close()


def test_aiortc_receiver_feeds_packets_to_the_buffer_as_we_expect() -> None:
    """Our buffers stand in for aiortc's: `add(packet)` returns (pli_flag, frame or None) and reads
    the depayloaded bytes aiortc leaves on `packet._data`."""
    source = inspect.getsource(RTCRtpReceiver._handle_rtp_packet)
    assert "pli_flag, encoded_frame = self.__jitter_buffer.add(packet)" in source, f"{AIORTC}: add()"
    assert "packet._data = depayload(" in source, f"{AIORTC}: packet._data"
    params = inspect.signature(JitterBuffer).parameters
    assert {"capacity", "prefetch"} <= params.keys(), f"{AIORTC}: JitterBuffer({list(params)})"
    assert JitterBuffer(capacity=16, prefetch=3)._prefetch == 3, f"{AIORTC}: JitterBuffer._prefetch"
    frame = JitterFrame(data=b"x", timestamp=960)
    assert (frame.data, frame.timestamp) == (b"x", 960), f"{AIORTC}: JitterFrame"


def test_aioice_looks_up_host_addresses_through_the_function_we_replace() -> None:
    params = list(inspect.signature(aioice.ice.get_host_addresses).parameters)
    assert params == ["use_ipv4", "use_ipv6"], f"{AIOICE}: get_host_addresses({params})"
    gather = inspect.getsource(aioice.ice.Connection)
    assert "get_host_addresses(" in gather, f"{AIOICE}: Connection no longer calls get_host_addresses"
    connection = aioice.ice.Connection(ice_controlling=True)
    assert isinstance(getattr(connection, "_nominated", None), dict), f"{AIOICE}: Connection._nominated"


async def test_aiortc_ice_transport_holds_the_aioice_connection() -> None:
    pc = RTCPeerConnection()
    try:
        dtls = pc.addTransceiver("audio").receiver.transport
        connection = getattr(dtls.transport, "_connection", None)
        assert isinstance(connection, aioice.ice.Connection), f"{AIORTC}: RTCIceTransport._connection"
    finally:
        await pc.close()


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        self.closed.set()

    def is_closing(self) -> bool:
        return self.closed.is_set()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def test_uvicorn_httptools_protocol_still_calls_the_hooks_we_override() -> None:
    import uvicorn
    from uvicorn.protocols.http import httptools_impl
    from uvicorn.server import ServerState

    from voice_agent.server.http_protocol import HeaderDeadlineProtocol, with_header_timeout

    for hook in ("connection_made", "connection_lost", "on_message_begin", "on_headers_complete"):
        assert hook in vars(httptools_impl.HttpToolsProtocol), f"{UVICORN}: no {hook}"
    assert HeaderDeadlineProtocol.__mro__[1] is httptools_impl.HttpToolsProtocol

    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("no request reaches the app: its headers never end")

    config = uvicorn.Config(app, http=with_header_timeout(0.01), log_level="warning")
    config.load()
    try:
        protocol = config.http_protocol_class(
            config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
        )
    except TypeError as e:
        pytest.fail(f"{UVICORN}: constructor {e}")
    transport = _Transport()
    protocol.connection_made(transport)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: a")
    await asyncio.wait_for(transport.closed.wait(), timeout=5)
    assert bytes(transport.written).startswith(b"HTTP/1.1 408 "), f"{UVICORN}: {bytes(transport.written)!r}"
    protocol.connection_lost(None)
