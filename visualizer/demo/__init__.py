"""The embedded demo's small models: coloured-digit data, training helpers, the judging classifier (no app code)."""
