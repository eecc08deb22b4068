"""Matplotlib figures drawn from result objects (one module per area). Plotting never computes
an analysis: it is handed results from ``zfcore``'s analysis modules and returns figures."""
