"""controlroom: a terminal release control room.

The packages are layers (README "Architecture"; tests/test_structure.py RULES is the contract): core, then config,
then journal, fleet and sources, then engine, then server, then cli; the app and widgets/ beside them draw.
"""

__version__ = "0.1.0"
