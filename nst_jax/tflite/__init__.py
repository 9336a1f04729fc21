"""TFLite models without a TFLite runtime: a bounds-checked reader of the
file (:mod:`.flatbuffer`, :mod:`.model`) and the float conv nets in it run
as Flax modules (:mod:`.network`, :mod:`.ops`)."""
