"""The VoiceSession kind: live calls, read from the pools' Redis and served as an aggregated API
(sessions.voicepool.dev/v1alpha1), never stored in etcd (docs/operator.md, "Sessions in kubectl")."""
