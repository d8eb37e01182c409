"""The study: a grid of cells run by the recipes, its results dataset and the report rendered from it."""
