"""Training tasks run by :class:`lenssr.training.engine.Engine`, one file each, registered in
:data:`lenssr.training.engine.TASKS`: ``supervised`` (:mod:`.supervised`, ``lenssr train``),
``denoise`` (:mod:`.denoise`, ``lenssr pretrain``) and ``gan`` (:mod:`.gan`, ``lenssr gan``).
A new task is one new file with a :class:`~lenssr.training.engine.Task` subclass and its
registration.
"""
