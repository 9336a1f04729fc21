"""Automatic face landmarks for the portrait preset (photos and paintings).

MediaPipe's BlazeFace detector and Face Mesh landmark network, read from
their TFLite files (:mod:`.tflite`) and run as a Flax module
(:mod:`.network`), with the steps that make them work on paintings
(:mod:`.find`): ``find_file(path)`` returns a :class:`Search` whose
``face.points_xy`` are the nine named points of
:mod:`nst_jax.portrait.landmarks`.
"""

from nst_jax.faces.finder import Face, Search, find, find_file
