"""The modern conv/pool/MLP stack (placeholder, written next)."""
