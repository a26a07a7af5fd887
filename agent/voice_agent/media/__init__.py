"""Audio in and out of the process: PCM, Opus, the aiortc peer, ICE, receive path, outbound track."""
