"""Pictures drawn with Pillow (no plotting dependency): the loss curve of
a run and the contact sheet of a sweep (:mod:`.plot` has both)."""
