"""Restoration networks: DyNet (weight-shared, run-time depth), the PromptIR baseline, DSRIR.

Importing this package never imports torchvision; code that needs it calls
:func:`common.torchvision_compat.ensure_torchvision_importable` first.
"""
