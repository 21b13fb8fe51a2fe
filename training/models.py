"""Training runs (fine-tuning the embedding network from the app)."""
