"""det_forget."""
