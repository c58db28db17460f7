"""Pure tensor maths: the loss registry (paper Eqs. 1, 2, 3, 6, 8 and the field's), the metrics (accuracy,
Eqs. 4, 5, 7), the feature-space diagnosis, and the input checks they share.
Nothing here reads files, builds models or knows about configs."""
