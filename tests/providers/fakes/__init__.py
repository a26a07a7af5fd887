"""Local fakes of the provider APIs, speaking their public wire protocols on 127.0.0.1.

Each fake records what it received (auth header, model, format, messages, audio) so tests can
assert it, and can be told to fail the next requests the way the real service fails.
"""
