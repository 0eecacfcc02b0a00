"""Config pieces every package's config model is built from: strict models (an unknown
key is an error, no infinite number), the id pattern, errors that name their field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError

CAMERA_ID = r"^[a-z0-9][a-z0-9_-]{0,62}$"

class Strict(BaseModel):
    # Unknown keys are errors: a misspelt option must not be silently ignored; and no
    # number is infinite or NaN (YAML's .inf and .nan included).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

def format_errors(err: ValidationError) -> list[str]:
    out = []
    for e in err.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        out.append(f"{loc}: {e['msg']}")
    return out
