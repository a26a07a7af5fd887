"""Pure functions that render the desired objects the operator owns (one module per kind)."""
