"""Hypothesis strategies over real SDP structure: start from a real aiortc offer and mutate what
a hostile or broken client would get wrong (fingerprints, m-lines, codecs, candidates, roles,
line endings), keeping every address loopback or unparseable so no packet leaves the host."""

from __future__ import annotations

from hypothesis import strategies as st

HEX = "0123456789ABCDEF"
MAX_SDP_CHARS = 400_000
# Loopback or not an address at all: an accepted offer makes the agent send ICE checks to these.
ADDRESSES = ["127.0.0.1", "::1", "999.1.1.1", "not-an-ip", "", "127.0.0.1.5", "::ffff:127.0.0.1"]
PREFIXES = [
    "a=fingerprint",
    "a=ice-ufrag",
    "a=ice-pwd",
    "m=audio",
    "a=mid",
    "a=group:BUNDLE",
    "c=",
    "o=",
    "s=",
    "t=",
    "a=setup",
    "a=rtpmap",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=msid",
    "a=ssrc",
]
junk = st.text(min_size=0, max_size=40).filter(lambda s: "\r" not in s and "\n" not in s)


@st.composite
def fingerprint(draw: st.DrawFn) -> str:
    algo = draw(st.sampled_from(["sha-256", "sha-1", "sha-512", "md5", "SHA-256", ""]))
    groups = draw(st.integers(0, 70))
    body = ":".join(draw(st.text(HEX, min_size=2, max_size=2)) for _ in range(groups))
    return f"a=fingerprint:{algo} {draw(st.sampled_from([body, body.lower(), body + ':', draw(junk)]))}"


@st.composite
def m_line(draw: st.DrawFn) -> list[str]:
    kind = draw(st.sampled_from(["audio", "video", "application", "text", ""]))
    port = draw(st.one_of(st.integers(-1, 70000), junk))
    proto = draw(st.sampled_from(["UDP/TLS/RTP/SAVPF", "RTP/AVP", "UDP/DTLS/SCTP", "garbage", ""]))
    pts = draw(st.lists(st.integers(-5, 300), max_size=12))
    lines = [f"m={kind} {port} {proto} {' '.join(map(str, pts))}".rstrip()]
    for pt in pts:
        name = draw(st.sampled_from(["opus", "PCMU", "PCMA", "G722", "FOOCODEC", "", "telephone-event"]))
        rate = draw(st.sampled_from([48000, 8000, 0, -1, 2**40]))
        chans = draw(st.sampled_from(["/2", "/1", "/0", "/999", ""]))
        lines.append(f"a=rtpmap:{pt} {name}/{rate}{chans}")
        if draw(st.booleans()):
            lines.append(f"a=fmtp:{pt} {draw(junk)}")
    return lines


@st.composite
def candidates(draw: st.DrawFn) -> list[str]:
    count = draw(st.sampled_from([0, 1, 5, 63, 65, 300, 3000]))
    addr = draw(st.sampled_from(ADDRESSES))
    typ = draw(st.sampled_from(["host", "srflx", "relay", "prflx", "bogus"]))
    proto = draw(st.sampled_from(["udp", "tcp", "UDP", "sctp"]))
    comp = draw(st.sampled_from([1, 2, 0, 99]))
    return [
        f"a=candidate:{i} {comp} {proto} {2**31 - i} {addr} {(i % 65000) + 1} typ {typ}" for i in range(count)
    ]


@st.composite
def hostile_sdp(draw: st.DrawFn, base: str) -> str:
    lines = base.split("\r\n")
    for _ in range(draw(st.integers(1, 4))):
        op = draw(
            st.sampled_from(
                ["drop", "fingerprint", "m-line", "candidates", "role", "direction", "junk", "dup", "ice"]
            )
        )
        if op == "drop":
            prefix = draw(st.sampled_from(PREFIXES))
            lines = [ln for ln in lines if not ln.startswith(prefix)]
        elif op == "fingerprint":
            fp = draw(fingerprint())
            lines = [fp if ln.startswith("a=fingerprint") else ln for ln in lines]
        elif op == "m-line":
            at = next((i for i, ln in enumerate(lines) if ln.startswith("m=")), len(lines) - 1)
            new = draw(m_line())
            keep = [ln for ln in lines[at + 1 :] if not ln.startswith(("a=rtpmap", "a=fmtp", "a=rtcp-fb"))]
            lines = lines[:at] + new + keep
        elif op == "candidates":
            lines = [*lines[:-1], *draw(candidates()), lines[-1]]
        elif op == "role":
            role = draw(st.sampled_from(["actpass", "active", "passive", "holdconn", "", "bogus"]))
            lines = [f"a=setup:{role}" if ln.startswith("a=setup") else ln for ln in lines]
        elif op == "direction":
            direction = draw(st.sampled_from(["sendrecv", "recvonly", "sendonly", "inactive", "bogus"]))
            lines = [f"a={direction}" if ln == "a=sendrecv" else ln for ln in lines]
        elif op == "junk":
            at = draw(st.integers(0, len(lines)))
            lines.insert(
                at, draw(st.one_of(junk, junk.map(lambda s: f"a={s}"), junk.map(lambda s: f"x={s}")))
            )
        elif op == "dup":
            start = next((i for i, ln in enumerate(lines) if ln.startswith("m=")), 0)
            lines = lines + lines[start:] * draw(st.integers(1, 20))
        else:
            ufrag, pwd = draw(junk), draw(junk)
            lines = [
                f"a=ice-ufrag:{ufrag}"
                if ln.startswith("a=ice-ufrag")
                else f"a=ice-pwd:{pwd}"
                if ln.startswith("a=ice-pwd")
                else ln
                for ln in lines
            ]
    sdp = draw(st.sampled_from(["\r\n", "\n", "\r"])).join(lines)
    if draw(st.integers(0, 9)) == 0:
        sdp = sdp[: draw(st.integers(0, len(sdp)))]
    # Frames over the server's 1 MiB WebSocket limit close the socket (1009) instead of getting an
    # error event; that path has its own test.
    return sdp[:MAX_SDP_CHARS]
