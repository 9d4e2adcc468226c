"""The loss families behind `cil.losses` (private; import from there).

As optax's `optax/losses/`: one module per family, one public face.
"""
