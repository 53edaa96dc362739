"""Where the search goes next: the space, continuation, the fidelity gate, the front and its hypervolume, the ledger."""
