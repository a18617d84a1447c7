"""Model pieces: projector, interleaving, decoder, heads and fusion variants."""
