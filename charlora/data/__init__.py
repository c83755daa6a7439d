"""The training data: raw pictures cleaned (preprocess), captioned (caption) and laid out for mflux (merge)."""
