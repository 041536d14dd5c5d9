"""sealdrop's cryptography: the age v1 core and the sealed-transfer container.

This package touches no file, socket, clock or environment on its own:
everything takes bytes, readers and writers, and randomness and time are
parameters with defaults. It never imports ``server`` or ``client``.
"""
