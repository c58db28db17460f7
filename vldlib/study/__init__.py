"""From runs to chapters: experiment grids, chapter declarations, statistics, readings, tables,
figures and the paper's reference values."""
