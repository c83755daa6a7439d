"""Base models: which FLUX.2 Klein models exist and their defaults, the embedded tiny ones, loading through mflux."""
