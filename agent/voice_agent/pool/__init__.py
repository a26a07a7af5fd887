"""Membership of a pool over Redis: pooled admission, the signaling relay, the registry."""
