"""How alike two sets of activations or samples are, with what noise would score beside every number."""
