"""The label_smoothing experiment's form and results on the When it fails page (being built)."""
