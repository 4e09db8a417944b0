# lib/ prot modules (filled in by its owner).
