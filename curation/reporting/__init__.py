"""Report stage internals: thumbnail and patch grids."""
