"""Deep Musician models: representations, dataset builders, model families, training and export."""
