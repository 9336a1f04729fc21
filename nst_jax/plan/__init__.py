"""The typed run plan: ``config -> Plan`` once, checked; below it no
module sees a config (see docs/architecture.md)."""

from nst_jax.plan.build import (
    build,
    content_files,
    fields,
    input_paths,
    several_photos)
from nst_jax.plan.program import hparams, spec, static
from nst_jax.plan.types import (
    DEFAULT_CONTENT,
    DEFAULT_STYLE,
    Plan,
    Scale,
    from_config)
from nst_jax.plan.validate import check, inert_fields

__all__ = ["build", "check", "content_files", "fields", "inert_fields",
           "from_config", "input_paths", "several_photos", "hparams", "spec", "static", "DEFAULT_CONTENT",
           "DEFAULT_STYLE", "Plan", "Scale"]
