"""The HTTP shell: routes, request limits, the slow-loris protocol, drain on SIGTERM."""
