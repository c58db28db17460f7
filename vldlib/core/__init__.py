"""Pure tensor maths: the losses (paper Eqs. 1, 2, 3, 6) and the metrics (accuracy, Eqs. 4, 5, 7).
Nothing here reads files, builds models or knows about configs."""
