"""DSRIR training internals: paired data, the contrastive loss, the learning-rate schedule."""
