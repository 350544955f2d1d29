"""Base layer every package may import: CLI/config parsing, atomic writes, logging, image codecs, the torchvision shim.

Imports nothing from dynet_model, curation, training or pipeline."""
