"""The train stage: params to mflux's training config, resumable mflux training, and its metrics."""
