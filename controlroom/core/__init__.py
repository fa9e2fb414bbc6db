"""The core: the one error root, the text neutraliser, who is at the keyboard, and the event vocabulary every layer
speaks (event kinds, host and rollout states as StrEnums, the host transition table); and a process's start-up
(no garbage collection while it imports).

May import: the standard library only.
"""
