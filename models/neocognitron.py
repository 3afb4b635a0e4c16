"""The Neocognitron (Fukushima): supervised and self-organising (placeholder)."""
