# lib/ config modules (filled in by its owner).
