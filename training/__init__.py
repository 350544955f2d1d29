"""Streaming dynamic pre-training, fine-tuning and evaluation."""
