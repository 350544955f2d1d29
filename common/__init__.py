"""Base layer every package may import: CLI/config parsing, atomic writes, the stage contract, image codecs, the torchvision shim.

Imports nothing from dynet_model, curation, training or pipeline."""
