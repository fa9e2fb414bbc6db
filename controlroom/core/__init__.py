"""The core: the one error root, the text neutraliser, who is at the keyboard, and the event vocabulary every layer
speaks (event kinds, host and rollout states as StrEnums, the host transition table).

May import: the standard library only.
"""
