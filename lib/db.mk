# lib/ db modules (filled in by its owner).
