"""What crosses the process boundary: signaling messages, session bodies and records."""
