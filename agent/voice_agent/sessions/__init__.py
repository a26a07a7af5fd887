"""Live calls of this agent: the manager, one call, its signaling socket, admission."""
